package eval

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sort"
)

// IdentityRange is a contiguous range of addresses of one family whose every
// address has the same identity. The agent turns these into the interval set
// that maps a peer address to its identity.
type IdentityRange struct {
	Lo, Hi netip.Addr
	ID     uint32
}

// IdentityInfo describes one identity: the exact set of groups its addresses
// belong to, and whether some of its addresses are workload addresses.
type IdentityInfo struct {
	ID uint32
	// Groups are group names, sorted; inline literals of rules appear as
	// their canonical prefix ("10.0.0.0/8").
	Groups    []string
	Workloads bool
}

// WorldIdentity is the identity of every address that is in no group.
const WorldIdentity uint32 = 0

// u128 is an address of either family as a number, so that ranges can be
// split and searched with integer arithmetic.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

// next returns a+1 and false when a is the largest value.
func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return u128{}, false
}

func (a u128) prev() u128 {
	if a.lo != 0 {
		return u128{a.hi, a.lo - 1}
	}
	return u128{a.hi - 1, ^uint64(0)}
}

func u128Of(ip netip.Addr) u128 {
	if ip.Is4() {
		b := ip.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := ip.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) addr(v4 bool) netip.Addr {
	if v4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(a.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return netip.AddrFrom16(b)
}

// prefixRange returns the first and last address of a masked prefix.
func prefixRange(p netip.Prefix) (lo, hi u128) {
	lo = u128Of(p.Addr())
	total := 128
	if p.Addr().Is4() {
		total = 32
	}
	host := total - p.Bits()
	hi = lo
	switch {
	case host >= 128:
		hi = u128{^uint64(0), ^uint64(0)}
	case host > 64:
		hi.lo = ^uint64(0)
		hi.hi |= (uint64(1) << (host - 64)) - 1
	case host == 64:
		hi.lo = ^uint64(0)
	case host > 0:
		hi.lo |= (uint64(1) << host) - 1
	}
	return lo, hi
}

// span is one address range that makes its addresses direct members of a
// group (member >= 0) or the addresses of a workload (member = -1-workload).
type span struct {
	lo, hi u128
	member int32
}

// segment is one of the disjoint ranges an address family is split into;
// it starts at its lo and ends where the next segment starts.
type segment struct {
	ident uint32
	wl    int32 // workload owning the address, or -1
}

// family is the disjoint split of one address family, searched by binary
// search on the range starts. The ranges cover the whole family.
type family struct {
	v4   bool
	lo4  []uint32
	lo6  []u128
	segs []segment
}

// lookup finds the segment holding address x of this family.
func (f *family) lookup(x u128) segment {
	if f.v4 {
		v := uint32(x.lo)
		i, j := 0, len(f.lo4)
		for j-i > 1 {
			h := int(uint(i+j) >> 1)
			if f.lo4[h] <= v {
				i = h
			} else {
				j = h
			}
		}
		return f.segs[i]
	}
	i, j := 0, len(f.lo6)
	for j-i > 1 {
		h := int(uint(i+j) >> 1)
		if !x.less(f.lo6[h]) {
			i = h
		} else {
			j = h
		}
	}
	return f.segs[i]
}

// identityBuilder splits address families into disjoint segments and gives
// each distinct group set (after nesting) one identity.
type identityBuilder struct {
	numGroups int
	// closure returns the sorted groups a direct member of g belongs to:
	// g itself and every group that nests it, transitively.
	closure func(g int32) []int32

	byBase   map[string]uint32 // direct-member set -> identity
	byGroups map[string]uint32 // closed group set -> identity
	idents   [][]int32         // group set of each identity; idents[0] is empty
	identWL  []bool
}

func newIdentityBuilder(numGroups int, closure func(int32) []int32) *identityBuilder {
	return &identityBuilder{
		numGroups: numGroups,
		closure:   closure,
		byBase:    map[string]uint32{"": WorldIdentity},
		byGroups:  map[string]uint32{"": WorldIdentity},
		idents:    [][]int32{nil},
		identWL:   []bool{false},
	}
}

func setKey(set []int32) string {
	buf := make([]byte, 4*len(set))
	for i, g := range set {
		binary.LittleEndian.PutUint32(buf[4*i:], uint32(g))
	}
	return string(buf)
}

// identityOf returns the identity of addresses that are direct members of
// exactly the groups in base (sorted): the identity of base closed under
// nesting. Two base sets with the same closure share an identity.
func (b *identityBuilder) identityOf(base []int32) uint32 {
	bk := setKey(base)
	if id, ok := b.byBase[bk]; ok {
		return id
	}
	var set []int32
	for _, g := range base {
		set = append(set, b.closure(g)...)
	}
	slices.Sort(set)
	set = slices.Compact(set)
	k := setKey(set)
	id, ok := b.byGroups[k]
	if !ok {
		id = uint32(len(b.idents))
		b.byGroups[k] = id
		b.idents = append(b.idents, set)
		b.identWL = append(b.identWL, false)
	}
	b.byBase[bk] = id
	return id
}

// split sweeps the spans of one family and returns its disjoint segments.
func (b *identityBuilder) split(v4 bool, spans []span) family {
	type event struct {
		at     u128
		member int32
		start  bool
	}
	last := u128{^uint64(0), ^uint64(0)}
	if v4 {
		last = u128{0, 0xffffffff}
	}
	events := make([]event, 0, 2*len(spans))
	for _, s := range spans {
		events = append(events, event{s.lo, s.member, true})
		if s.hi != last {
			n, _ := s.hi.next()
			events = append(events, event{n, s.member, false})
		}
	}
	// At one address, ends go first: a workload address may end where the
	// next one begins.
	sort.Slice(events, func(i, j int) bool {
		a, b := &events[i], &events[j]
		if a.at != b.at {
			return a.at.less(b.at)
		}
		return !a.start && b.start
	})

	f := family{v4: v4}
	count := make([]int32, b.numGroups)
	var active []int32
	wl := int32(-1)
	cur := u128{}
	for i := 0; ; {
		for ; i < len(events) && events[i].at == cur; i++ {
			ev := events[i]
			if ev.member < 0 {
				wl = -1
				if ev.start {
					wl = -1 - ev.member
				}
				continue
			}
			g := ev.member
			if ev.start {
				if count[g] == 0 {
					k, _ := slices.BinarySearch(active, g)
					active = slices.Insert(active, k, g)
				}
				count[g]++
				continue
			}
			count[g]--
			if count[g] == 0 {
				k, _ := slices.BinarySearch(active, g)
				active = slices.Delete(active, k, k+1)
			}
		}
		seg := segment{ident: b.identityOf(active), wl: wl}
		if wl >= 0 {
			b.identWL[seg.ident] = true
		}
		// Neighbours that nothing tells apart are one range.
		if n := len(f.segs); n == 0 || f.segs[n-1] != seg {
			f.segs = append(f.segs, seg)
			if v4 {
				f.lo4 = append(f.lo4, uint32(cur.lo))
			} else {
				f.lo6 = append(f.lo6, cur)
			}
		}
		if i == len(events) {
			return f
		}
		cur = events[i].at
	}
}

// ranges lists the family's ranges with a non-world identity, merging
// neighbours of the same identity (workload boundaries do not matter there).
func (f *family) ranges() []IdentityRange {
	var out []IdentityRange
	n := len(f.segs)
	for i := 0; i < n; i++ {
		id := f.segs[i].ident
		var lo, hi u128
		if f.v4 {
			lo = u128{0, uint64(f.lo4[i])}
		} else {
			lo = f.lo6[i]
		}
		j := i
		for j+1 < n && f.segs[j+1].ident == id {
			j++
		}
		if j+1 < n {
			if f.v4 {
				hi = u128{0, uint64(f.lo4[j+1])}.prev()
			} else {
				hi = f.lo6[j+1].prev()
			}
		} else if f.v4 {
			hi = u128{0, 0xffffffff}
		} else {
			hi = u128{^uint64(0), ^uint64(0)}
		}
		if id != WorldIdentity {
			out = append(out, IdentityRange{Lo: lo.addr(f.v4), Hi: hi.addr(f.v4), ID: id})
		}
		i = j
	}
	return out
}
