package eval

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// compiler holds what Compile needs between its steps.
type compiler struct {
	set *policy.Set
	e   *Evaluator
	dir Directory // nil: directory groups have no members

	wlIPs   [][]netip.Addr // by workload index
	wlTags  []map[string]string
	groupIx map[string]int32 // group name -> index
	refIx   map[string]int32 // entry of a rule or scope as written -> group index
	named   int              // groups [0, named) are named, the rest literals
	literal []netip.Prefix   // by group index - named
	parents [][]int32        // group -> groups that nest it
	closure [][]int32        // group -> itself and its nesting ancestors, sorted
	spans   [2][]span        // v4, v6
	wlGs    [][]int32        // workload -> its groups, sorted
	ordered []*policy.Policy // sections in evaluation order

	scratch  []int32
	services map[string][]ports.Spec
	inline   map[string]ports.Spec // port specs written in rules, parsed once
	profiles map[string]int32      // name -> index in Evaluator.profiles
}

// Directory resolves the directory groups a Group lists to user names,
// nesting included. *directory.Directory implements it; eval does not
// import it, so the evaluator stays free of LDAP.
type Directory interface {
	Members(group string) []string
}

// Option changes how Compile builds an Evaluator.
type Option func(*compiler)

// WithDirectory makes the users of a Group's directoryGroups members of it
// on the source side, as if the group listed them in users. Without a
// directory, directoryGroups match no one.
func WithDirectory(d Directory) Option { return func(c *compiler) { c.dir = d } }

// Compile turns a policy revision and its inventory into an Evaluator. It
// checks what evaluation depends on (references, nesting cycles, addresses,
// port specs, tag expressions) and names the object at fault; it does not
// replace validation of the set.
func Compile(s *policy.Set, opts ...Option) (*Evaluator, error) {
	c := &compiler{set: s, e: &Evaluator{}}
	for _, o := range opts {
		o(c)
	}
	steps := []func() error{
		c.workloads,
		c.groups,
		c.literals,
		c.members,
		c.identities,
		c.contextGroups,
		c.rules,
		c.appliedTo,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return c.e, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedUnique(s []int32) []int32 {
	slices.Sort(s)
	return slices.Compact(s)
}

// parseAddrOrPrefix reads "10.0.0.1", "10.0.0.0/8" or their IPv6 forms as a
// masked prefix.
func parseAddrOrPrefix(s string) (netip.Prefix, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	return netip.Prefix{}, false
}

func (c *compiler) addSpan(p netip.Prefix, member int32) {
	lo, hi := prefixRange(p)
	fam := 1
	if p.Addr().Is4() {
		fam = 0
	}
	c.spans[fam] = append(c.spans[fam], span{lo: lo, hi: hi, member: member})
}

func (c *compiler) workloads() error {
	names := sortedKeys(c.set.Workloads)
	owner := map[netip.Addr]string{}
	c.e.workloads = names
	c.wlIPs = make([][]netip.Addr, len(names))
	c.wlTags = make([]map[string]string, len(names))
	for i, name := range names {
		w := c.set.Workloads[name]
		c.wlTags[i] = w.Spec.Tags
		for j, s := range w.Spec.IPs {
			// An interface address may come with its prefix length; the
			// workload owns the address only.
			a, err := netip.ParseAddr(s)
			if err != nil {
				p, perr := netip.ParsePrefix(s)
				if perr != nil {
					return fmt.Errorf("eval: workload %s: ips[%d] %q: %w", name, j, s, err)
				}
				a = p.Addr()
			}
			a = a.Unmap().WithZone("")
			if prev, ok := owner[a]; ok {
				return fmt.Errorf("eval: workload %s: ips[%d] %s: already the address of workload %s", name, j, a, prev)
			}
			owner[a] = name
			c.wlIPs[i] = append(c.wlIPs[i], a)
			c.addSpan(netip.PrefixFrom(a, a.BitLen()), int32(-1-i))
		}
	}
	return nil
}

// groups indexes named groups and resolves nesting.
func (c *compiler) groups() error {
	names := sortedKeys(c.set.Groups)
	c.groupIx = make(map[string]int32, len(names))
	for i, n := range names {
		c.groupIx[n] = int32(i)
	}
	c.named = len(names)
	c.e.groupNames = names
	c.parents = make([][]int32, len(names))
	for i, n := range names {
		for j, child := range c.set.Groups[n].Spec.Groups {
			ci, ok := c.groupIx[child]
			if !ok {
				return fmt.Errorf("eval: group %s: groups[%d] %q: no such group", n, j, child)
			}
			c.parents[ci] = append(c.parents[ci], int32(i))
		}
	}
	// Ancestors by depth-first search; a group met again while its own
	// search is open closes a cycle.
	c.closure = make([][]int32, len(names))
	state := make([]uint8, len(names)) // 0 new, 1 open, 2 done
	var visit func(g int32) error
	visit = func(g int32) error {
		switch state[g] {
		case 1:
			return fmt.Errorf("eval: group %s: nesting cycle", names[g])
		case 2:
			return nil
		}
		state[g] = 1
		set := []int32{g}
		for _, p := range c.parents[g] {
			if err := visit(p); err != nil {
				return err
			}
			set = append(set, c.closure[p]...)
		}
		c.closure[g] = sortedUnique(set)
		state[g] = 2
		return nil
	}
	for g := range names {
		if err := visit(int32(g)); err != nil {
			return err
		}
	}
	return nil
}

// literals gives every inline IP/CIDR of a rule or scope a pseudo-group of
// its own, so literals and groups resolve the same way, and resolves every
// distinct entry once.
func (c *compiler) literals() error {
	c.refIx = map[string]int32{}
	literalIx := map[netip.Prefix]int32{}
	add := func(s string) {
		if _, ok := c.refIx[s]; ok {
			return
		}
		p, ok := parseAddrOrPrefix(s)
		if !ok {
			if g, ok := c.groupIx[s]; ok {
				c.refIx[s] = g
			}
			return // unknown: the rule that names it reports it
		}
		g, ok := literalIx[p]
		if !ok {
			g = int32(c.named + len(c.literal))
			literalIx[p] = g
			c.literal = append(c.literal, p)
			c.e.groupNames = append(c.e.groupNames, p.String())
			c.closure = append(c.closure, []int32{g})
		}
		c.refIx[s] = g
	}
	for _, pname := range sortedKeys(c.set.Policies) {
		p := c.set.Policies[pname]
		for _, s := range p.Spec.AppliedTo {
			add(s)
		}
		for _, r := range p.Spec.Rules {
			for _, s := range r.Sources {
				add(s)
			}
			for _, s := range r.Destinations {
				add(s)
			}
		}
	}
	for i, p := range c.literal {
		c.addSpan(p, int32(c.named+i))
	}
	return nil
}

// members adds the addresses that make an endpoint a direct member of each
// named group: its own IPs and the IPs of workloads its match selects.
func (c *compiler) members() error {
	exprs := map[string]tagexpr.Expr{}
	for gi, name := range c.e.groupNames[:c.named] {
		g := c.set.Groups[name]
		for j, s := range g.Spec.IPs {
			p, ok := parseAddrOrPrefix(s)
			if !ok {
				return fmt.Errorf("eval: group %s: ips[%d] %q: not an IP address or CIDR prefix", name, j, s)
			}
			c.addSpan(p, int32(gi))
		}
		if g.Spec.Match == "" {
			continue
		}
		x, ok := exprs[g.Spec.Match]
		if !ok {
			var err error
			if x, err = tagexpr.Parse(g.Spec.Match); err != nil {
				return fmt.Errorf("eval: group %s: match: %w", name, err)
			}
			exprs[g.Spec.Match] = x
		}
		for wi, tags := range c.wlTags {
			if !x.Eval(tags) {
				continue
			}
			for _, a := range c.wlIPs[wi] {
				c.addSpan(netip.PrefixFrom(a, a.BitLen()), int32(gi))
			}
		}
	}
	return nil
}

func (c *compiler) identities() error {
	e := c.e
	b := newIdentityBuilder(len(e.groupNames), func(g int32) []int32 { return c.closure[g] })
	e.v4 = b.split(true, c.spans[0])
	e.v6 = b.split(false, c.spans[1])
	e.identWL = b.identWL
	e.identOff = make([]uint32, 0, len(b.idents)+1)
	for _, set := range b.idents {
		e.identOff = append(e.identOff, uint32(len(e.identGroups)))
		e.identGroups = append(e.identGroups, set...)
	}
	e.identOff = append(e.identOff, uint32(len(e.identGroups)))

	c.wlGs = make([][]int32, len(e.workloads))
	for wi, ips := range c.wlIPs {
		var gs []int32
		for _, a := range ips {
			id, _ := e.lookup(a)
			gs = append(gs, e.groupsOf(id)...)
		}
		c.wlGs[wi] = sortedUnique(gs)
	}
	return nil
}

// contextGroups indexes the groups an endpoint joins by the flow's user
// (source side: listed users and the members of listed directory groups)
// or destination name.
func (c *compiler) contextGroups() error {
	e := c.e
	users := map[string][]int32{}
	names := map[fqdnPattern][]int32{}
	for gi, name := range e.groupNames[:c.named] {
		g := c.set.Groups[name]
		// User names compare without case, as directories do.
		for _, u := range g.Spec.Users {
			u = strings.ToLower(u)
			users[u] = append(users[u], c.closure[gi]...)
		}
		if c.dir != nil {
			for _, dg := range g.Spec.DirectoryGroups {
				for _, u := range c.dir.Members(dg) {
					u = strings.ToLower(u)
					users[u] = append(users[u], c.closure[gi]...)
				}
			}
		}
		for _, n := range g.Spec.FQDNs {
			p := parseFQDNPattern(n)
			names[p] = append(names[p], int32(gi))
		}
	}
	e.users = make(map[string][]int32, len(users))
	for u, gs := range users {
		e.users[u] = sortedUnique(gs)
	}
	e.fqdns = buildFQDNIndex(names, func(g int32) []int32 { return c.closure[g] })
	return nil
}

var protoNames = map[string]bool{"any": true, "tcp": true, "udp": true, "sctp": true, "icmp": true, "icmpv6": true}

// isInlineService tells a port spec written in a rule from a Service name.
func isInlineService(s string) bool {
	return strings.Contains(s, "/") || protoNames[strings.ToLower(s)]
}

func (c *compiler) rules() error {
	e := c.e
	s := c.set
	c.services = map[string][]ports.Spec{}
	c.inline = map[string]ports.Spec{}
	for _, name := range sortedKeys(s.Services) {
		var specs []ports.Spec
		for j, p := range s.Services[name].Spec.Ports {
			spec, err := ports.Parse(p)
			if err != nil {
				return fmt.Errorf("eval: service %s: ports[%d]: %w", name, j, err)
			}
			specs = append(specs, spec)
		}
		c.services[name] = specs
	}
	c.profiles = map[string]int32{}
	for _, name := range sortedKeys(s.ContextProfiles) {
		p, err := compileProfile(s.ContextProfiles[name])
		if err != nil {
			return fmt.Errorf("eval: context profile %s: %w", name, err)
		}
		c.profiles[name] = int32(len(e.profiles))
		e.profiles = append(e.profiles, p)
	}

	dflt := policy.ActionAllow
	dlog := false
	if s.Default != nil {
		if s.Default.Spec.Action != "" {
			dflt = s.Default.Spec.Action
		}
		dlog = s.Default.Spec.Log
		if !validAction(dflt) {
			return fmt.Errorf("eval: default rule: action %q: want allow, drop or reject", dflt)
		}
	}
	e.dflt = RuleInfo{
		ID: policy.DefaultRuleID, Key: policy.DefaultRuleName, Name: policy.DefaultRuleName,
		Action: dflt, Direction: policy.DirectionInOut, Mode: policy.ModeEnforce, Log: dlog,
	}

	// Rules without an id yet (a set that never went through the manager)
	// get ids above every id the set knows, in evaluation order.
	next := policy.DefaultRuleID
	for _, id := range s.RuleIDs {
		next = max(next, id)
	}
	nrules, nrefs, nspecs := 0, 0, 0
	for _, p := range s.Policies {
		nrules += len(p.Spec.Rules)
		for i := range p.Spec.Rules {
			nrefs += len(p.Spec.Rules[i].Sources) + len(p.Spec.Rules[i].Destinations)
			nspecs += len(p.Spec.Rules[i].Services)
		}
	}
	e.groupRefs = make([]int32, 0, nrefs)
	e.specs = make([]ports.Spec, 0, nspecs)
	e.byID = make(map[uint32]int32, nrules)
	e.rules = make([]rule, 0, nrules)
	e.info = make([]RuleInfo, 0, nrules)

	c.ordered = s.OrderedPolicies()
	e.scoped = make([]int32, len(c.ordered))
	for si, p := range c.ordered {
		pname := p.Metadata.Name
		if p.Spec.Category.Rank() < 0 {
			return fmt.Errorf("eval: policy %s: category %q: want one of %v", pname, p.Spec.Category, policy.Categories)
		}
		for ri := range p.Spec.Rules {
			pr := &p.Spec.Rules[ri]
			where := func() string { return fmt.Sprintf("eval: policy %s: rules[%d] (%s)", pname, ri, pr.Name) }
			r, info, err := c.rule(p, pr)
			if err != nil {
				return fmt.Errorf("%s: %w", where(), err)
			}
			r.section = int32(si)
			id, ok := s.RuleIDs[info.Key]
			if !ok || id == 0 {
				next++
				id = next
			}
			if id == policy.DefaultRuleID {
				return fmt.Errorf("%s: rule id %d is the default rule's", where(), id)
			}
			if other, dup := e.byID[id]; dup {
				return fmt.Errorf("%s: rule id %d is also rule %s", where(), id, e.info[other].Key)
			}
			info.ID = id
			e.byID[id] = int32(len(e.rules))
			e.rules = append(e.rules, r)
			e.info = append(e.info, info)
		}
	}
	c.index()

	words := (len(e.rules) + 63) / 64
	e.scratch.New = func() any { b := make([]uint64, words); return &b }

	nid := len(e.identWL)
	e.src.bothRefs = make([]uint32, nid)
	e.dst.bothRefs = make([]uint32, nid)
	for id := range nid {
		for _, g := range e.groupsOf(uint32(id)) {
			e.src.bothRefs[id] += uint32(len(e.src.both[g]))
			e.dst.bothRefs[id] += uint32(len(e.dst.both[g]))
		}
	}
	return nil
}

// maxList bounds the entries of one list of a rule, which the packed rule
// counts in 16 bits.
const maxList = 1<<16 - 1

// rule compiles one rule of section p; the caller adds section and id.
func (c *compiler) rule(p *policy.Policy, pr *policy.Rule) (rule, RuleInfo, error) {
	e := c.e
	info := RuleInfo{
		Key: policy.RuleKey(p.Metadata.Name, pr.Name), Policy: p.Metadata.Name, Name: pr.Name,
		Category: p.Spec.Category, Action: pr.Action, Direction: pr.Direction, Mode: pr.Mode, Log: pr.Log,
	}
	var r rule
	if !validAction(pr.Action) {
		return r, info, fmt.Errorf("action %q: want allow, drop or reject", pr.Action)
	}
	switch pr.Direction {
	case "", policy.DirectionInOut:
		r.dir, info.Direction = dirIn|dirOut, policy.DirectionInOut
	case policy.DirectionIn:
		r.dir = dirIn
	case policy.DirectionOut:
		r.dir = dirOut
	default:
		return r, info, fmt.Errorf("direction %q: want in, out or inout", pr.Direction)
	}
	switch pr.Mode {
	case "", policy.ModeEnforce:
		info.Mode = policy.ModeEnforce
	case policy.ModeStaged:
		r.staged = true
	default:
		return r, info, fmt.Errorf("mode %q: want enforce or staged", pr.Mode)
	}

	groups := func(field string, names []string) (off uint32, n uint16, err error) {
		gs := c.scratch[:0]
		defer func() { c.scratch = gs[:0] }()
		for j, name := range names {
			g, ok := c.refIx[name]
			if !ok {
				return 0, 0, fmt.Errorf("%s[%d] %q: no such group", field, j, name)
			}
			gs = append(gs, g)
		}
		gs = sortedUnique(gs)
		if len(gs) > maxList {
			return 0, 0, fmt.Errorf("%s: more than %d entries", field, maxList)
		}
		off = uint32(len(e.groupRefs))
		e.groupRefs = append(e.groupRefs, gs...)
		return off, uint16(len(gs)), nil
	}
	var err error
	if r.srcOff, r.srcN, err = groups("sources", pr.Sources); err != nil {
		return r, info, err
	}
	if r.dstOff, r.dstN, err = groups("destinations", pr.Destinations); err != nil {
		return r, info, err
	}

	r.svcOff = uint32(len(e.specs))
	for j, sv := range pr.Services {
		if isInlineService(sv) {
			spec, ok := c.inline[sv]
			if !ok {
				var err error
				if spec, err = ports.Parse(sv); err != nil {
					return r, info, fmt.Errorf("services[%d]: %w", j, err)
				}
				c.inline[sv] = spec
			}
			e.specs = append(e.specs, spec)
			continue
		}
		specs, ok := c.services[sv]
		if !ok {
			return r, info, fmt.Errorf("services[%d] %q: no such service", j, sv)
		}
		e.specs = append(e.specs, specs...)
	}
	n := len(e.specs) - int(r.svcOff)
	if n > maxList {
		return r, info, fmt.Errorf("services: more than %d port specs", maxList)
	}
	r.svcN = uint16(n)
	// Services that name only empty Services leave nothing to match.
	r.noService = len(pr.Services) > 0 && n == 0

	r.profOff = uint32(len(e.profRefs))
	for j, name := range pr.Profiles {
		pi, ok := c.profiles[name]
		if !ok {
			return r, info, fmt.Errorf("profiles[%d] %q: no such context profile", j, name)
		}
		e.profRefs = append(e.profRefs, pi)
	}
	if len(pr.Profiles) > maxList {
		return r, info, fmt.Errorf("profiles: more than %d entries", maxList)
	}
	r.profN = uint16(len(pr.Profiles))
	return r, info, nil
}

func validAction(a policy.Action) bool {
	return a == policy.ActionAllow || a == policy.ActionDrop || a == policy.ActionReject
}

// appliedTo builds the workload x section bitmap of sections that have a
// scope. A workload is in a scope group when one of its addresses is.
func (c *compiler) appliedTo() error {
	e := c.e
	ordered := c.ordered
	nscoped := 0
	for si, p := range ordered {
		e.scoped[si] = -1
		if len(p.Spec.AppliedTo) > 0 {
			e.scoped[si] = int32(nscoped)
			nscoped++
		}
	}
	if nscoped == 0 {
		return nil
	}
	members := make([][]int32, len(e.groupNames)) // group -> workloads
	for wi, gs := range c.wlGs {
		for _, g := range gs {
			members[g] = append(members[g], int32(wi))
		}
	}
	e.stride = (nscoped + 63) / 64
	e.applied = make([]uint64, e.stride*len(e.workloads))
	for si, p := range ordered {
		s := e.scoped[si]
		if s < 0 {
			continue
		}
		for j, name := range p.Spec.AppliedTo {
			g, ok := c.refIx[name]
			if !ok {
				return fmt.Errorf("eval: policy %s: appliedTo[%d] %q: no such group", p.Metadata.Name, j, name)
			}
			for _, wi := range members[g] {
				e.applied[int(wi)*e.stride+int(s>>6)] |= 1 << (uint(s) & 63)
			}
		}
	}
	return nil
}
