package recommend

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// slug makes a valid object name out of free text: lowercase letters and
// digits, other runs of characters become one "-".
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
		} else {
			dash = true
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

func quote(s string) string { return strconv.Quote(s) }

func (c *class) match() string {
	var terms []string
	for _, kv := range [][2]string{{"app", c.app}, {"tier", c.tier}} {
		if kv[1] == "" {
			terms = append(terms, "!has("+kv[0]+")")
		} else {
			terms = append(terms, kv[0]+" == "+quote(kv[1]))
		}
	}
	return strings.Join(terms, " && ")
}

func (c *class) name() string {
	switch {
	case c.tier == "":
		return slug(c.app)
	case c.app == "":
		return slug("tier-" + c.tier)
	}
	return slug(c.app + "-" + c.tier)
}

func canonical(expr string) string {
	e, err := tagexpr.Parse(expr)
	if err != nil {
		return ""
	}
	return e.String()
}

// groupFinder finds an existing group by tag expression or by membership.
type groupFinder struct {
	names   []string
	match   []string // canonical expression, or ""
	members []string // membership key, or "" when not a pure tag group
}

func membersKey(idx []int) string {
	var b strings.Builder
	for _, i := range idx {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(',')
	}
	return b.String()
}

func (r *recommender) newGroupFinder() *groupFinder {
	f := &groupFinder{}
	if r.existing == nil {
		return f
	}
	for _, name := range slices.Sorted(maps.Keys(r.existing.Groups)) {
		g := r.existing.Groups[name]
		if g == nil || g.Spec.Match == "" || len(g.Spec.IPs)+len(g.Spec.Groups)+len(g.Spec.Users)+len(g.Spec.DirectoryGroups)+len(g.Spec.FQDNs) > 0 {
			continue
		}
		e, err := tagexpr.Parse(g.Spec.Match)
		if err != nil {
			continue
		}
		var idx []int
		for i, w := range r.inventory {
			if e.Eval(w.Spec.Tags) {
				idx = append(idx, i)
			}
		}
		f.names = append(f.names, name)
		f.match = append(f.match, e.String())
		f.members = append(f.members, membersKey(idx))
	}
	return f
}

func (f *groupFinder) find(match string, members []int) (string, bool) {
	key := membersKey(members)
	for i := range f.names {
		if f.match[i] == match || len(members) > 0 && f.members[i] == key {
			return f.names[i], true
		}
	}
	return "", false
}

// unique returns base, or base with a number, so that it names no object
// of the existing set or of the draft.
func (r *recommender) unique(base string, kind policy.Kind) string {
	taken := func(n string) bool {
		if r.names[n] {
			return true
		}
		if r.existing != nil {
			_, ok := r.existing.Get(kind, n)
			return ok
		}
		return false
	}
	n := base
	for i := 2; taken(n); i++ {
		n = base + "-v" + strconv.Itoa(i)
	}
	r.names[n] = true
	return n
}

func header(kind policy.Kind, name, desc string) policy.Header {
	return policy.Header{APIVersion: policy.APIVersion, Kind: kind, Metadata: policy.Metadata{Name: name, Description: desc}}
}

// portSpecs turns a peer pair's observed ports into port specs, writing
// dense runs as ranges.
func (r *recommender) portSpecs(ps map[portKey]struct{}) []string {
	keys := slices.SortedFunc(maps.Keys(ps), func(a, b portKey) int {
		if a.proto != b.proto {
			return int(a.proto) - int(b.proto)
		}
		return int(a.port) - int(b.port)
	})
	var out []string
	for i := 0; i < len(keys); {
		k := keys[i]
		name := ports.ProtoName(k.proto)
		if ports.IsICMP(k.proto) {
			out = append(out, name+"/"+strconv.Itoa(int(k.port)))
			i++
			continue
		}
		if !ports.HasPorts(k.proto) {
			out = append(out, name)
			i++
			continue
		}
		j := i + 1
		for j < len(keys) && keys[j].proto == k.proto && keys[j].port-keys[j-1].port <= r.opt.RangeGap {
			j++
		}
		if j-i >= r.opt.RangeMinPorts {
			out = append(out, fmt.Sprintf("%s/%d-%d", name, k.port, keys[j-1].port))
		} else {
			for _, x := range keys[i:j] {
				out = append(out, fmt.Sprintf("%s/%d", name, x.port))
			}
		}
		i = j
	}
	return out
}

type ruleAgg struct {
	srcs, dsts []string
	app        string // AppID the rule's profile names, "" for none
	services   map[string]struct{}
	ev         Evidence
	srcName    []string
	dstName    []string
}

const maxRuleBase = 240

func joinNames(ns []string) string {
	if len(ns) > 3 {
		return fmt.Sprintf("%s-and-%d-more", strings.Join(ns[:2], "-"), len(ns)-2)
	}
	return strings.Join(ns, "-")
}

func (ra *ruleAgg) specKey() string {
	return strings.Join(slices.Sorted(maps.Keys(ra.services)), ",")
}

// mergeRules folds rules that differ only in their sources (same
// destinations, same services) into one, then those that differ only in
// their destinations: each merge allows exactly what its parts allowed. A
// side meaning "any" is never merged, since the union would widen it. The
// result is sorted by sources, then destinations.
func mergeRules(rs []*ruleAgg) []*ruleAgg {
	sortRules := func(rs []*ruleAgg) {
		slices.SortFunc(rs, func(a, b *ruleAgg) int {
			return cmpJoin(a.srcs, a.dsts, b.srcs, b.dsts)
		})
	}
	sortRules(rs)
	fold := func(rs []*ruleAgg, bySrc bool) []*ruleAgg {
		var out []*ruleAgg
		byKey := map[string]*ruleAgg{}
		for _, ra := range rs {
			fixed, free := ra.dsts, ra.srcs
			if !bySrc {
				fixed, free = ra.srcs, ra.dsts
			}
			if len(free) == 0 || len(fixed) == 0 {
				out = append(out, ra)
				continue
			}
			key := strings.Join(fixed, ",") + "|" + ra.specKey() + "|" + ra.app
			m := byKey[key]
			if m == nil {
				byKey[key] = ra
				out = append(out, ra)
				continue
			}
			if bySrc {
				m.srcs = union(m.srcs, ra.srcs)
				m.srcName = append(m.srcName, ra.srcName...)
			} else {
				m.dsts = union(m.dsts, ra.dsts)
				m.dstName = append(m.dstName, ra.dstName...)
			}
			m.ev.merge(&ra.ev)
		}
		sortRules(out)
		return out
	}
	return fold(fold(rs, true), false)
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func cmpJoin(as, ad, bs, bd []string) int {
	if c := strings.Compare(strings.Join(as, ","), strings.Join(bs, ",")); c != 0 {
		return c
	}
	return strings.Compare(strings.Join(ad, ","), strings.Join(bd, ","))
}

func (r *recommender) draft() (*Draft, error) {
	d := &Draft{Evidence: map[string]*Evidence{}}
	r.names = map[string]bool{}
	finder := r.newGroupFinder()
	reused := map[string]bool{}
	section := r.opt.Name
	if section == "" {
		section = slug("recommended-" + r.scope.String())
	}
	var prev *policy.Policy
	var cov *coverage
	if r.existing != nil {
		if prev = r.existing.Policies[section]; prev != nil {
			cov = newCoverage(prev, r.existing)
		}
	}

	// Scope group.
	var scopeMembers []int
	for i, ok := range r.inScope {
		if ok {
			scopeMembers = append(scopeMembers, i)
		}
	}
	scopeMatch := r.scope.String()
	scopeGroup, ok := finder.find(scopeMatch, scopeMembers)
	if ok {
		reused[scopeGroup] = true
	} else {
		scopeGroup = r.unique(slug("scope-"+scopeMatch), policy.KindGroup)
		d.Groups = append(d.Groups, &policy.Group{
			Header: header(policy.KindGroup, scopeGroup, "workloads in scope of the recommendation "+scopeMatch),
			Spec:   policy.GroupSpec{Match: scopeMatch},
		})
	}

	// Groups of the classes that take part in some flow, in class order
	// made deterministic by name.
	used := map[int32]bool{}
	for k := range r.edges {
		used[k.src], used[k.dst] = true, true
	}
	var usedClasses []*class
	for ci, c := range r.classes {
		if used[int32(ci)] {
			usedClasses = append(usedClasses, c)
		}
	}
	slices.SortFunc(usedClasses, func(a, b *class) int {
		return strings.Compare(a.app+"\x00"+a.tier+"\x00"+a.workload, b.app+"\x00"+b.tier+"\x00"+b.workload)
	})
	for _, c := range usedClasses {
		if c.workload != "" {
			w := r.inventory[c.members[0]]
			for _, s := range w.Spec.IPs {
				c.addrs = append(c.addrs, s)
			}
			slices.Sort(c.addrs)
			continue
		}
		m := canonical(c.match())
		if name, ok := finder.find(m, c.members); ok {
			c.group = name
			reused[name] = true
			continue
		}
		c.group = r.unique(c.name(), policy.KindGroup)
		d.Groups = append(d.Groups, &policy.Group{
			Header: header(policy.KindGroup, c.group, "recommended: workloads tagged "+m),
			Spec:   policy.GroupSpec{Match: m},
		})
	}

	peers := func(ci int32, e *edge) ([]string, string) {
		if ci != external {
			c := r.classes[ci]
			if c.group != "" {
				return []string{c.group}, c.group
			}
			return c.addrs, slug(c.workload)
		}
		if len(e.ext) > r.opt.MaxExternalAddrs {
			return nil, "any"
		}
		out := make([]string, 0, len(e.ext))
		for _, a := range slices.SortedFunc(maps.Keys(e.ext), netip.Addr.Compare) {
			out = append(out, a.String())
		}
		return out, "external"
	}

	rules := map[string]*ruleAgg{}
	for _, k := range slices.SortedFunc(maps.Keys(r.edges), func(a, b peerKey) int {
		if a.src != b.src {
			return int(a.src - b.src)
		}
		if a.dst != b.dst {
			return int(a.dst - b.dst)
		}
		return strings.Compare(r.appName(a.app), r.appName(b.app))
	}) {
		e := r.edges[k]
		if cov != nil {
			if e = cov.uncovered(k, r.appName(k.app), e, peers); e == nil {
				continue
			}
		}
		srcs, sn := peers(k.src, e)
		dsts, dn := peers(k.dst, e)
		app := r.appName(k.app)
		key := strings.Join(srcs, ",") + "|" + strings.Join(dsts, ",") + "|" + app
		ra := rules[key]
		if ra == nil {
			ra = &ruleAgg{srcs: srcs, dsts: dsts, app: app, services: map[string]struct{}{}, srcName: []string{sn}, dstName: []string{dn}}
			rules[key] = ra
		}
		for _, s := range r.portSpecs(e.ports.all()) {
			ra.services[s] = struct{}{}
		}
		ra.ev.merge(&e.ev)
	}

	merged := mergeRules(slices.Collect(maps.Values(rules)))

	// Services, one per port spec, reusing an existing one with exactly
	// that spec.
	existingSvc := map[string]string{}
	if r.existing != nil {
		for _, n := range slices.Sorted(maps.Keys(r.existing.Services)) {
			s := r.existing.Services[n]
			if s != nil && len(s.Spec.Ports) == 1 {
				if _, ok := existingSvc[s.Spec.Ports[0]]; !ok {
					existingSvc[s.Spec.Ports[0]] = n
				}
			}
		}
	}
	allSpecs := map[string]struct{}{}
	for _, ra := range merged {
		maps.Copy(allSpecs, ra.services)
	}
	svcName := map[string]string{}
	for _, spec := range slices.Sorted(maps.Keys(allSpecs)) {
		if n, ok := existingSvc[spec]; ok {
			svcName[spec] = n
			reused[n] = true
			continue
		}
		n := r.unique(slug(strings.ReplaceAll(spec, "/", "-")), policy.KindService)
		svcName[spec] = n
		d.Services = append(d.Services, &policy.Service{
			Header: header(policy.KindService, n, ""),
			Spec:   policy.ServiceSpec{Ports: []string{spec}},
		})
	}
	profileName := r.profiles(d, merged, reused)
	slices.SortFunc(d.Groups, func(a, b *policy.Group) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	slices.SortFunc(d.Services, func(a, b *policy.Service) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })

	// Rules, by name; allows first, the drop closing the scope last.
	var out []policy.Rule
	ruleNames := map[string]bool{}
	if prev != nil {
		for _, rule := range prev.Spec.Rules {
			ruleNames[rule.Name] = true
		}
	}
	for _, ra := range merged {
		base := slug("allow-" + joinNames(ra.srcName) + "-to-" + joinNames(ra.dstName))
		if ra.app != "" {
			base = slug(base + "-" + appSlug(ra.app))
		}
		if len(base) > maxRuleBase { // room for a clash suffix within 253
			base = strings.TrimRight(base[:maxRuleBase], "-")
		}
		name := base
		for i := 2; ruleNames[name]; i++ {
			name = base + "-" + strconv.Itoa(i)
		}
		ruleNames[name] = true
		var svcs []string
		for spec := range ra.services {
			svcs = append(svcs, svcName[spec])
		}
		slices.Sort(svcs)
		ev := ra.ev
		d.Evidence[name] = &ev
		rule := policy.Rule{
			Name:         name,
			Description:  ev.Summary(),
			Sources:      ra.srcs,
			Destinations: ra.dsts,
			Services:     svcs,
			Action:       policy.ActionAllow,
			Mode:         r.opt.Mode,
		}
		if ra.app != "" {
			rule.Profiles = []string{profileName[ra.app]}
		}
		out = append(out, rule)
	}
	slices.SortFunc(out, func(a, b policy.Rule) int { return strings.Compare(a.Name, b.Name) })
	for _, rule := range out {
		d.Changes.Added = append(d.Changes.Added, rule.Name)
	}
	if prev != nil {
		d.Policy = r.extend(d, prev, cov, out)
		d.Groups = referencedGroups(d.Groups, out)
		d.Reused = slices.Sorted(maps.Keys(reused))
		return d, nil
	}
	closing := r.uniqueRule("drop-rest-to-"+scopeGroup, ruleNames)
	d.Changes.Added = append(d.Changes.Added, closing)
	out = append(out, policy.Rule{
		Name:         closing,
		Description:  "zero trust: anything not allowed above into " + scopeMatch,
		Destinations: []string{scopeGroup},
		Action:       policy.ActionDrop,
		Mode:         r.opt.Mode,
	})
	d.Policy = &policy.Policy{
		Header: header(policy.KindPolicy, section, "recommended from observed flows for "+scopeMatch),
		Spec: policy.PolicySpec{
			Category:  policy.CategoryApplication,
			AppliedTo: []string{scopeGroup},
			Rules:     out,
		},
	}
	d.Reused = slices.Sorted(maps.Keys(reused))
	return d, nil
}

func (r *recommender) uniqueRule(base string, taken map[string]bool) string {
	base = slug(base)
	n := base
	for i := 2; taken[n]; i++ {
		n = base + "-" + strconv.Itoa(i)
	}
	return n
}

// extend is prev with the rules the draft adds inserted before its first
// rule that is not an allow (the closing drop), and, with Options.Prune,
// without its stale rules. Every other part of prev, and every rule it
// keeps, stays as it was, so that a run that finds nothing new changes
// nothing.
func (r *recommender) extend(d *Draft, prev *policy.Policy, cov *coverage, added []policy.Rule) *policy.Policy {
	d.Changes.Incremental = true
	p := prev.DeepCopy()
	stale := map[string]bool{}
	for i, cr := range cov.rules {
		if cov.used[i] {
			d.Changes.Unchanged = append(d.Changes.Unchanged, cr.name)
			d.Evidence[cr.name] = cov.evidence[i]
		} else {
			d.Changes.Stale = append(d.Changes.Stale, cr.name)
			stale[cr.name] = true
		}
	}
	var rules []policy.Rule
	inserted := false
	for _, rule := range p.Spec.Rules {
		if !inserted && rule.Action != policy.ActionAllow {
			rules = append(rules, added...)
			inserted = true
		}
		if stale[rule.Name] && r.opt.Prune {
			d.Changes.Removed = append(d.Changes.Removed, rule.Name)
			continue
		}
		// Staged first, then enforced: a run that is not staged enforces
		// the rules an earlier staged run added.
		if rule.Mode == policy.ModeStaged && r.opt.Mode != policy.ModeStaged {
			rule.Mode = ""
			d.Changes.Promoted = append(d.Changes.Promoted, rule.Name)
		}
		rules = append(rules, rule)
	}
	if !inserted {
		rules = append(rules, added...)
	}
	p.Spec.Rules = rules
	return p
}

// referencedGroups keeps the groups the rules name.
func referencedGroups(gs []*policy.Group, rules []policy.Rule) []*policy.Group {
	named := map[string]bool{}
	for _, rule := range rules {
		for _, n := range append(slices.Clone(rule.Sources), rule.Destinations...) {
			named[n] = true
		}
	}
	return slices.DeleteFunc(gs, func(g *policy.Group) bool { return !named[g.Metadata.Name] })
}

func (r *recommender) appName(i uint16) string {
	if i == 0 {
		return ""
	}
	return r.apps[i]
}

// appSlug is an AppID as a name part: APP_SSH -> ssh.
func appSlug(app string) string { return slug(strings.TrimPrefix(app, "APP_")) }

// profiles gives every app the rules name a ContextProfile: an existing
// one that names exactly that app, with no version or FQDN condition, or a
// new one in d.Profiles. It returns the profile name per app.
func (r *recommender) profiles(d *Draft, rules []*ruleAgg, reused map[string]bool) map[string]string {
	existing := map[string]string{}
	if r.existing != nil {
		for _, n := range slices.Sorted(maps.Keys(r.existing.ContextProfiles)) {
			p := r.existing.ContextProfiles[n]
			if p == nil || len(p.Spec.FQDNs) > 0 || len(p.Spec.Apps) != 1 {
				continue
			}
			if a := p.Spec.Apps[0]; a.MinVersion == "" && a.MaxVersion == "" {
				if _, ok := existing[a.Name]; !ok {
					existing[a.Name] = n
				}
			}
		}
	}
	names := map[string]string{}
	for _, ra := range rules {
		if ra.app == "" || names[ra.app] != "" {
			continue
		}
		if n, ok := existing[ra.app]; ok {
			names[ra.app] = n
			reused[n] = true
			continue
		}
		n := r.unique("app-"+appSlug(ra.app), policy.KindContextProfile)
		names[ra.app] = n
		d.Profiles = append(d.Profiles, &policy.ContextProfile{
			Header: header(policy.KindContextProfile, n, "connections identified as "+ra.app),
			Spec:   policy.ContextProfileSpec{Apps: []policy.AppMatch{{Name: ra.app}}},
		})
	}
	slices.SortFunc(d.Profiles, func(a, b *policy.ContextProfile) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	return names
}
