package inventory

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// Facts the merge reads and writes on workloads (spec.facts).
const (
	// FactSource is "agent" on workloads an agent created (the control
	// plane's convention) and "inventory" on workloads the merge created;
	// anything else was declared by an operator.
	FactSource      = "source"
	SourceAgent     = "agent"
	SourceInventory = "inventory"
	// FactManagedTags and FactManagedFacts list (comma-separated, sorted)
	// the tag keys and fact keys the merge set on a workload, so that the
	// next merge tells them from what an operator wrote. "os" in
	// FactManagedFacts stands for spec.os.
	FactManagedTags  = "inventory.tags"
	FactManagedFacts = "inventory.facts"
)

// AttrOS is the attribute that lands in spec.os rather than spec.facts.
const AttrOS = "os"

// DefaultStaleAfter is how long a record may go unobserved before it is
// stale and loses to any fresher fact.
const DefaultStaleAfter = 30 * 24 * time.Hour

// Policy tunes the merge.
type Policy struct {
	// StaleAfter: records not observed for longer are stale. 0 means
	// DefaultStaleAfter.
	StaleAfter time.Duration
}

// Fact is one thing one source says about one workload attribute, and
// whether the merge used it.
type Fact struct {
	Workload string `json:"workload"`
	Source   string `json:"source"`
	Kind     Kind   `json:"kind"`
	Key      string `json:"key,omitempty"`
	// Attribute is "name", "ip", "tag.KEY", "os" or another attribute.
	Attribute string `json:"attribute"`
	Value     string `json:"value"`
	// Observed is zero for live facts: an agent's current binding, an
	// operator's declaration.
	Observed time.Time `json:"observed,omitzero"`
	Stale    bool      `json:"stale,omitempty"`
	Used     bool      `json:"used"`
	Reason   string    `json:"reason"`
}

// Conflict is an attribute on which sources disagree: one address claimed
// for two workloads, or two values of one tag or attribute.
type Conflict struct {
	// Subject is "ip 10.0.0.5", or "WORKLOAD tag.app" / "WORKLOAD owner".
	Subject string `json:"subject"`
	// Claims are the disagreeing facts, the used one first.
	Claims []Fact `json:"claims"`
}

// Result is the outcome of a merge.
type Result struct {
	// Upserts are the workloads that differ from what the store holds.
	Upserts []*policy.Workload
	// Deletes are workloads the merge created that no source describes
	// any more (never one bound to a host interface).
	Deletes []string
	// Facts are every fact about every workload, by workload then
	// attribute, used facts first.
	Facts     []Fact
	Conflicts []Conflict
}

// FactsOf returns the facts about one workload.
func (r *Result) FactsOf(workload string) []Fact {
	var out []Fact
	for _, f := range r.Facts {
		if f.Workload == workload {
			out = append(out, f)
		}
	}
	return out
}

// entity is one workload being computed: an existing one, or one that
// records name.
type entity struct {
	name     string
	old      *policy.Workload // nil when the merge would create it
	records  []*Record
	ipFacts  []*Fact
	ipWon    []string // addresses the entity's record claims won, in order
	facts    []*Fact  // name, tag and attribute facts
	bound    bool
	owned    bool // created by the merge: it may set IPs and delete it
	baseTags map[string]string
	baseAttr map[string]string // operator-written facts and os
}

// Merge computes the workloads that the records and the current workloads
// make, and the decisions behind them. Precedence for every attribute: a
// live agent binding, then an operator's declaration, then a fresh record
// over a stale one, then the more recently observed, then vCenter over a
// CMDB, then the source's name (so that the result never depends on input
// order). The addresses of workloads an agent or operator made are never
// changed; workloads are never renamed.
func Merge(records []Record, workloads []*policy.Workload, now time.Time, p Policy) Result {
	if p.StaleAfter <= 0 {
		p.StaleAfter = DefaultStaleAfter
	}
	recs := make([]*Record, len(records))
	for i := range records {
		recs[i] = &records[i]
	}
	slices.SortFunc(recs, func(a, b *Record) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Key, b.Key))
	})

	ents := map[string]*entity{}
	boundIP := map[string]string{} // address -> bound workload
	for _, w := range workloads {
		e := newEntity(w)
		ents[e.name] = e
		if e.bound {
			for _, ip := range w.Spec.IPs {
				boundIP[ip] = e.name
			}
		}
	}

	// Which workload each record describes: the one of its name, else
	// the one an agent bound one of its addresses to, else a new one.
	for _, r := range recs {
		nameFact := &Fact{Source: r.Source, Kind: r.Kind, Key: r.Key, Attribute: "name", Value: r.Name, Observed: r.Observed, Stale: stale(r, now, p)}
		e := ents[r.Name]
		if e == nil {
			for _, ip := range r.IPs {
				if w, ok := boundIP[ip]; ok {
					e = ents[w]
					nameFact.Reason = fmt.Sprintf("address %s is bound by an agent to workload %s on %s/%s, which keeps its name", ip, w, e.old.Spec.Host, e.old.Spec.Interface)
					break
				}
			}
		}
		if e == nil {
			e = &entity{name: r.Name, owned: true}
			ents[r.Name] = e
		}
		if nameFact.Reason == "" {
			nameFact.Used, nameFact.Reason = true, "names the workload"
		}
		nameFact.Workload = e.name
		e.records = append(e.records, r)
		e.facts = append(e.facts, nameFact)
	}

	names := slices.Sorted(maps.Keys(ents))
	var res Result
	resolveIPs(ents, names, now, p, &res)
	for _, n := range names {
		e := ents[n]
		res.Conflicts = append(res.Conflicts, e.resolveValues(now, p)...)
		w, del, why := e.build()
		switch {
		case del:
			res.Deletes = append(res.Deletes, e.name)
		case w != nil && (e.old == nil || !sameWorkload(e.old, w)):
			res.Upserts = append(res.Upserts, w)
		}
		if why != "" {
			for _, f := range e.facts {
				if f.Used && f.Kind != KindAgent && f.Kind != KindOperator {
					f.Used, f.Reason = false, why
				}
			}
			for _, f := range e.ipFacts {
				if f.Used && f.Kind != KindAgent && f.Kind != KindOperator {
					f.Used, f.Reason = false, why
				}
			}
		}
		for _, f := range append(e.ipFacts, e.facts...) {
			res.Facts = append(res.Facts, *f)
		}
	}
	slices.SortStableFunc(res.Facts, func(a, b Fact) int {
		return cmp.Or(strings.Compare(a.Workload, b.Workload), attrOrder(a.Attribute)-attrOrder(b.Attribute),
			strings.Compare(a.Attribute, b.Attribute), boolOrder(b.Used)-boolOrder(a.Used))
	})
	return res
}

func newEntity(w *policy.Workload) *entity {
	e := &entity{
		name:     w.Metadata.Name,
		old:      w,
		bound:    w.Spec.Host != "" && w.Spec.Interface != "",
		owned:    w.Spec.Facts[FactSource] == SourceInventory,
		baseTags: map[string]string{},
		baseAttr: map[string]string{},
	}
	managedTags := splitList(w.Spec.Facts[FactManagedTags])
	managedFacts := splitList(w.Spec.Facts[FactManagedFacts])
	for k, v := range w.Spec.Tags {
		if !slices.Contains(managedTags, k) {
			e.baseTags[k] = v
		}
	}
	if w.Spec.OS != "" && !slices.Contains(managedFacts, AttrOS) {
		e.baseAttr[AttrOS] = w.Spec.OS
	}
	for k, v := range w.Spec.Facts {
		if !slices.Contains(managedFacts, k) && !internalFact(k) {
			e.baseAttr[k] = v
		}
	}
	return e
}

// internalFact reports facts that are bookkeeping, not attributes.
func internalFact(k string) bool {
	return k == FactSource || k == FactManagedTags || k == FactManagedFacts
}

// agentFacts are the facts the control plane sets from a report.
var agentFacts = map[string]bool{"mac": true, "interfaceKind": true}

// baseFact is how the merge sees what the workload itself says: bound
// addresses are the agent's, everything else the operator's.
func (e *entity) baseFact(attr, value string) *Fact {
	f := &Fact{Workload: e.name, Source: string(KindOperator), Kind: KindOperator, Attribute: attr, Value: value}
	if attr == "ip" && e.bound {
		f.Source, f.Kind, f.Key = string(KindAgent), KindAgent, e.old.Spec.Host+"/"+e.old.Spec.Interface
	}
	if agentFacts[attr] {
		f.Source, f.Kind = string(KindAgent), KindAgent
	}
	return f
}

func stale(r *Record, now time.Time, p Policy) bool {
	return !r.Observed.IsZero() && now.Sub(r.Observed) > p.StaleAfter
}

func recordFact(r *Record, workload, attr, value string, now time.Time, p Policy) *Fact {
	return &Fact{Workload: workload, Source: r.Source, Kind: r.Kind, Key: r.Key, Attribute: attr, Value: value, Observed: r.Observed, Stale: stale(r, now, p)}
}

// resolveIPs gives each address claimed by records to one workload.
func resolveIPs(ents map[string]*entity, names []string, now time.Time, p Policy, res *Result) {
	type claim struct {
		e *entity
		f *Fact
	}
	claims := map[string][]claim{}
	var order []string
	add := func(ip string, c claim) {
		if _, ok := claims[ip]; !ok {
			order = append(order, ip)
		}
		claims[ip] = append(claims[ip], c)
	}
	for _, n := range names {
		e := ents[n]
		if e.old != nil && (e.bound || !e.owned) {
			for _, ip := range e.old.Spec.IPs {
				f := e.baseFact("ip", ip)
				e.ipFacts = append(e.ipFacts, f)
				add(ip, claim{e, f})
			}
		}
		for _, r := range e.records {
			for _, ip := range r.IPs {
				f := recordFact(r, e.name, "ip", ip, now, p)
				e.ipFacts = append(e.ipFacts, f)
				add(ip, claim{e, f})
			}
		}
	}
	for _, ip := range order {
		cs := claims[ip]
		facts := make([]*Fact, len(cs))
		for i, c := range cs {
			facts[i] = c.f
		}
		winner, why := best(facts)
		we := cs[slices.Index(facts, winner)].e
		contested := false
		for _, c := range cs {
			if c.e != we {
				contested = true
			}
		}
		for _, c := range cs {
			switch {
			case c.e != we:
				c.f.Used = false
				c.f.Reason = fmt.Sprintf("address claimed for workload %s by %s (%s), which wins: %s", we.name, winner.Source, winner.Kind, why)
			case c.f.Kind == KindAgent:
				c.f.Used, c.f.Reason = true, "live agent binding"
			case c.f.Kind == KindOperator:
				c.f.Used, c.f.Reason = true, "declared by an operator"
			case !we.owned:
				// An operator or an agent owns the workload's address list.
				if slices.Contains(we.old.Spec.IPs, ip) {
					c.f.Used, c.f.Reason = true, "agrees with the workload's declared addresses"
				} else {
					c.f.Used, c.f.Reason = false, "the workload's addresses come from its operator or agent; imported addresses are not added"
				}
			default:
				c.f.Used = true
				c.f.Reason = "only claim"
				if contested {
					c.f.Reason = "wins: " + why
				} else if len(cs) > 1 {
					c.f.Reason = "agreed by every source"
				}
				if !slices.Contains(we.ipWon, ip) {
					we.ipWon = append(we.ipWon, ip)
				}
			}
		}
		if contested && hasRecord(facts) {
			res.Conflicts = append(res.Conflicts, conflict("ip "+ip, winner, facts))
		}
	}
}

func hasRecord(fs []*Fact) bool {
	for _, f := range fs {
		if f.Kind != KindAgent && f.Kind != KindOperator {
			return true
		}
	}
	return false
}

// conflict lists the claims with the winner first.
func conflict(subject string, winner *Fact, facts []*Fact) Conflict {
	c := Conflict{Subject: subject, Claims: []Fact{*winner}}
	for _, f := range facts {
		if f != winner {
			c.Claims = append(c.Claims, *f)
		}
	}
	return c
}

// resolveValues decides each tag and attribute of the entity.
func (e *entity) resolveValues(now time.Time, p Policy) []Conflict {
	byAttr := map[string][]*Fact{}
	if e.old != nil {
		for k, v := range e.baseTags {
			byAttr["tag."+k] = append(byAttr["tag."+k], e.baseFact("tag."+k, v))
		}
		for k, v := range e.baseAttr {
			byAttr[k] = append(byAttr[k], e.baseFact(k, v))
		}
	}
	for _, r := range e.records {
		for k, v := range r.Tags {
			byAttr["tag."+k] = append(byAttr["tag."+k], recordFact(r, e.name, "tag."+k, v, now, p))
		}
		for k, v := range r.Attrs {
			byAttr[k] = append(byAttr[k], recordFact(r, e.name, k, v, now, p))
		}
	}
	var out []Conflict
	for _, attr := range slices.Sorted(maps.Keys(byAttr)) {
		fs := byAttr[attr]
		winner, why := best(fs)
		contested := false
		for _, f := range fs {
			if f.Value != winner.Value {
				contested = true
			}
		}
		for _, f := range fs {
			switch {
			case f == winner && contested:
				f.Used, f.Reason = true, "wins: "+why
			case f == winner && f.Kind == KindOperator:
				f.Used, f.Reason = true, "declared by an operator"
			case f == winner:
				f.Used, f.Reason = true, "only value"
			case f.Value == winner.Value:
				f.Used, f.Reason = true, "same value as "+winner.Source
			default:
				f.Used = false
				f.Reason = fmt.Sprintf("%s (%s) says %q and wins: %s", winner.Source, winner.Kind, winner.Value, why)
			}
			e.facts = append(e.facts, f)
		}
		if contested {
			out = append(out, conflict(e.name+" "+attr, winner, fs))
		}
	}
	return out
}

// build makes the entity's workload from its decided facts. It returns
// del for a merge-created workload with nothing left, and a reason why
// the records are not used when the entity cannot be a workload.
func (e *entity) build() (w *policy.Workload, del bool, why string) {
	if e.old != nil {
		w = cloneWorkload(e.old)
	} else {
		w = &policy.Workload{
			Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: e.name}},
			Spec:   policy.WorkloadSpec{Facts: map[string]string{FactSource: SourceInventory}},
		}
	}
	if e.owned {
		var ips []string
		if e.bound {
			ips = slices.Clone(e.old.Spec.IPs)
		}
		for _, ip := range e.ipWon {
			if !slices.Contains(ips, ip) {
				ips = append(ips, ip)
			}
		}
		w.Spec.IPs = ips
		if len(ips) == 0 {
			return nil, e.old != nil, "no address is left for this workload: a workload needs at least one IP"
		}
	}

	tags := maps.Clone(e.baseTags)
	if tags == nil {
		tags = map[string]string{}
	}
	facts := map[string]string{}
	for k, v := range w.Spec.Facts {
		if internalFact(k) || e.baseAttr[k] == v {
			facts[k] = v
		}
	}
	w.Spec.OS = e.baseAttr[AttrOS]
	var managedTags, managedFacts []string
	for _, f := range e.facts {
		if !f.Used || f.Kind == KindOperator || f.Kind == KindAgent || f.Attribute == "name" {
			continue
		}
		if k, ok := strings.CutPrefix(f.Attribute, "tag."); ok {
			tags[k] = f.Value
			managedTags = appendUnique(managedTags, k)
			continue
		}
		if f.Attribute == AttrOS {
			w.Spec.OS = f.Value
		} else {
			facts[f.Attribute] = f.Value
		}
		managedFacts = appendUnique(managedFacts, f.Attribute)
	}
	setList(facts, FactManagedTags, managedTags)
	setList(facts, FactManagedFacts, managedFacts)
	w.Spec.Tags = nilIfEmpty(tags)
	w.Spec.Facts = nilIfEmpty(facts)
	if errs := policy.ValidateObject(policy.Document{Object: w}); len(errs) > 0 {
		if e.old == nil {
			return nil, false, "cannot be a workload: " + errs.Error()
		}
		return nil, false, "would make workload " + e.name + " invalid: " + errs.Error()
	}
	return w, false, ""
}

// best returns the fact that wins among fs and why it beats the runner-up.
func best(fs []*Fact) (*Fact, string) {
	win := fs[0]
	for _, f := range fs[1:] {
		if ok, _ := beats(f, win); ok {
			win = f
		}
	}
	why := "no other claim"
	var runner *Fact
	for _, f := range fs {
		if f == win || f.Value == win.Value && f.Workload == win.Workload {
			continue
		}
		if runner == nil {
			runner = f
		} else if ok, _ := beats(f, runner); ok {
			runner = f
		}
	}
	if runner != nil {
		_, why = beats(win, runner)
	}
	return win, why
}

func kindRank(k Kind) int {
	switch k {
	case KindAgent:
		return 3
	case KindOperator:
		return 2
	case KindVCenter:
		return 1
	}
	return 0
}

// beats reports whether a wins over b, and why (or why not).
func beats(a, b *Fact) (bool, string) {
	ra, rb := kindRank(a.Kind), kindRank(b.Kind)
	if (ra >= 2 || rb >= 2) && ra != rb {
		if ra > rb {
			return true, describeKind(a.Kind) + " beats " + string(b.Kind) + " facts"
		}
		return false, describeKind(b.Kind) + " beats " + string(a.Kind) + " facts"
	}
	if a.Stale != b.Stale {
		if !a.Stale {
			return true, fmt.Sprintf("%s's fact is stale (observed %s)", b.Source, b.Observed.UTC().Format(time.RFC3339))
		}
		return false, fmt.Sprintf("%s's fact is stale (observed %s)", a.Source, a.Observed.UTC().Format(time.RFC3339))
	}
	if !a.Observed.Equal(b.Observed) {
		later, earlier := a, b
		if b.Observed.After(a.Observed) {
			later, earlier = b, a
		}
		return later == a, fmt.Sprintf("observed %s, after %s's %s", later.Observed.UTC().Format(time.RFC3339), earlier.Source, earlier.Observed.UTC().Format(time.RFC3339))
	}
	if ra != rb {
		return ra > rb, "equally fresh; vcenter ranks above cmdb"
	}
	if c := cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Key, b.Key)); c != 0 {
		return c < 0, "equally fresh and of the same kind; the first source and key by name wins"
	}
	return false, "identical"
}

func describeKind(k Kind) string {
	if k == KindAgent {
		return "a live agent binding"
	}
	return "an operator's declaration"
}

func attrOrder(a string) int {
	switch {
	case a == "name":
		return 0
	case a == "ip":
		return 1
	case strings.HasPrefix(a, "tag."):
		return 2
	}
	return 3
}

func boolOrder(b bool) int {
	if b {
		return 1
	}
	return 0
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func setList(m map[string]string, k string, vals []string) {
	if len(vals) == 0 {
		delete(m, k)
		return
	}
	slices.Sort(vals)
	m[k] = strings.Join(vals, ",")
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func cloneWorkload(w *policy.Workload) *policy.Workload {
	c := *w
	c.Metadata.Labels = maps.Clone(w.Metadata.Labels)
	c.Spec.IPs = slices.Clone(w.Spec.IPs)
	c.Spec.Tags = maps.Clone(w.Spec.Tags)
	c.Spec.Facts = maps.Clone(w.Spec.Facts)
	return &c
}

func sameWorkload(a, b *policy.Workload) bool {
	return a.Spec.Host == b.Spec.Host && a.Spec.Interface == b.Spec.Interface && a.Spec.OS == b.Spec.OS &&
		slices.Equal(a.Spec.IPs, b.Spec.IPs) && maps.Equal(a.Spec.Tags, b.Spec.Tags) && maps.Equal(a.Spec.Facts, b.Spec.Facts)
}
