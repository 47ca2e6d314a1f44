package eval

import (
	"net/netip"
	"slices"
	"strings"
)

// Members is a group's membership as the evaluator resolved it, nesting
// included: what a flow endpoint must be to count as the group.
type Members struct {
	// Workloads have at least one address in the group; Addrs lists those
	// addresses (a workload may have others that are not).
	Workloads []WorkloadMember
	// Prefixes cover the group's addresses outside workloads: the IPs and
	// CIDRs it (or a nested group) lists, whole even where a workload's
	// address lies inside them.
	Prefixes []netip.Prefix
	// Users make a connection's source a member, FQDNs its destination
	// (exact names, "*.suffix" wildcards, "*").
	Users []string
	FQDNs []string
}

// WorkloadMember is one workload of a group and its addresses in it.
type WorkloadMember struct {
	Name  string
	Addrs []netip.Addr
}

// Members returns the members of a named group; false when the revision
// has no such group.
func (e *Evaluator) Members(group string) (Members, bool) {
	g := int32(slices.Index(e.groupNames, group))
	if g < 0 || isLiteralName(group) {
		return Members{}, false
	}
	in := make([]bool, len(e.identWL))
	for id := range in {
		_, in[id] = slices.BinarySearch(e.groupsOf(uint32(id)), g)
	}
	var m Members
	byWL := map[int32]int{}
	for _, f := range []*family{&e.v4, &e.v6} {
		f.members(in, func(wl int32, a netip.Addr) {
			i, ok := byWL[wl]
			if !ok {
				i = len(m.Workloads)
				byWL[wl] = i
				m.Workloads = append(m.Workloads, WorkloadMember{Name: e.workloads[wl]})
			}
			m.Workloads[i].Addrs = append(m.Workloads[i].Addrs, a)
		}, func(lo, hi u128) {
			m.Prefixes = appendRange(m.Prefixes, lo, hi, f.v4)
		})
	}
	slices.SortFunc(m.Workloads, func(a, b WorkloadMember) int { return strings.Compare(a.Name, b.Name) })
	for u, gs := range e.users {
		if _, ok := slices.BinarySearch(gs, g); ok {
			m.Users = append(m.Users, u)
		}
	}
	slices.Sort(m.Users)
	m.FQDNs = e.fqdns.patternsOf(g)
	return m, true
}

// isLiteralName tells the pseudo-group of an inline IP or CIDR, which
// shares the name space of groups inside the evaluator, from a group.
func isLiteralName(s string) bool {
	_, ok := parseAddrOrPrefix(s)
	return ok
}

// members walks the family's segments whose identity is in the group:
// each workload address once, and each run of neighbouring member
// segments that holds an address outside workloads as one range. A run
// made only of workload addresses is those workloads, not a range.
func (f *family) members(in []bool, workload func(wl int32, a netip.Addr), addrs func(lo, hi u128)) {
	n := len(f.segs)
	start := func(i int) u128 {
		if f.v4 {
			return u128{0, uint64(f.lo4[i])}
		}
		return f.lo6[i]
	}
	end := func(i int) u128 {
		switch {
		case i+1 < n:
			return start(i + 1).prev()
		case f.v4:
			return u128{0, 0xffffffff}
		}
		return u128{^uint64(0), ^uint64(0)}
	}
	for i := 0; i < n; i++ {
		if !in[f.segs[i].ident] {
			continue
		}
		j, literal := i, false
		for ; j < n && in[f.segs[j].ident]; j++ {
			if wl := f.segs[j].wl; wl >= 0 {
				// Neighbouring addresses of one workload share a segment;
				// a workload has a handful, so they are listed one by one.
				for a, last := start(j), end(j); ; a, _ = a.next() {
					workload(wl, a.addr(f.v4))
					if a == last {
						break
					}
				}
			} else {
				literal = true
			}
		}
		if literal {
			addrs(start(i), end(j-1))
		}
		i = j
	}
}

// appendRange appends the fewest prefixes that cover lo..hi exactly.
func appendRange(out []netip.Prefix, lo, hi u128, v4 bool) []netip.Prefix {
	bits := 128
	if v4 {
		bits = 32
	}
	for {
		// The shortest prefix starting at lo that ends within hi.
		best := netip.PrefixFrom(lo.addr(v4), bits)
		for b := bits - 1; b >= 0; b-- {
			p := netip.PrefixFrom(lo.addr(v4), b)
			if p.Masked().Addr() != p.Addr() {
				break
			}
			if _, last := prefixRange(p); hi.less(last) {
				break
			}
			best = p
		}
		out = append(out, best)
		_, last := prefixRange(best)
		if last == hi {
			return out
		}
		lo, _ = last.next()
	}
}

// patternsOf lists the names that make a destination a member of group g:
// exact names and wildcards, leaving out names a listed wildcard covers.
func (x *fqdnIndex) patternsOf(g int32) []string {
	has := func(gs []int32) bool { _, ok := slices.BinarySearch(gs, g); return ok }
	if has(x.any) {
		return []string{"*"}
	}
	var suffixes []string
	for s, gs := range x.suffix {
		if has(gs) {
			suffixes = append(suffixes, s)
		}
	}
	covered := func(name string, self string) bool {
		for _, s := range suffixes {
			if s != self && len(name) > len(s) && strings.HasSuffix(name, s) {
				return true
			}
		}
		return false
	}
	var out []string
	for _, s := range suffixes {
		if !covered(s, s) {
			out = append(out, "*"+s)
		}
	}
	for name, gs := range x.exact {
		if has(gs) && !covered(name, "") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
