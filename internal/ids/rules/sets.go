package rules

import (
	"math/bits"
	"net/netip"
	"slices"
)

// Contains reports whether a is in the set. The parser leaves Include and
// Exclude sorted and non-overlapping, which lets large sets be searched by
// bisection; it allocates nothing.
func (s *AddrSet) Contains(a netip.Addr) bool {
	if s == nil || s.Any {
		return true
	}
	a = a.Unmap()
	if len(s.Include) > 0 && !inPrefixes(s.Include, a) {
		return false
	}
	return !inPrefixes(s.Exclude, a)
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) <= 8 {
		for _, p := range ps {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	// The last prefix starting at or before a is the only one that can
	// hold it, as the prefixes do not overlap.
	i, _ := slices.BinarySearchFunc(ps, a, func(p netip.Prefix, a netip.Addr) int {
		return p.Addr().Compare(a)
	})
	if i < len(ps) && ps[i].Addr() == a {
		return true
	}
	return i > 0 && ps[i-1].Contains(a)
}

// Contains reports whether port p is in the set.
func (s *PortSet) Contains(p uint16) bool {
	if s == nil || s.Any {
		return true
	}
	if len(s.Include) > 0 && !inPortRanges(s.Include, p) {
		return false
	}
	return !inPortRanges(s.Exclude, p)
}

func inPortRanges(rs []PortRange, p uint16) bool {
	if len(rs) <= 8 {
		for _, r := range rs {
			if r.Lo <= p && p <= r.Hi {
				return true
			}
		}
		return false
	}
	i, _ := slices.BinarySearchFunc(rs, p, func(r PortRange, p uint16) int {
		if r.Hi < p {
			return -1
		}
		if r.Lo > p {
			return 1
		}
		return 0
	})
	return i < len(rs) && rs[i].Lo <= p && p <= rs[i].Hi
}

// The parser evaluates address and port specifications (lists, nested
// negations, variables) as sets of ranges, then writes the result in the
// shorter of the two forms AddrSet and PortSet offer: the set itself in
// Include, or everything but its complement in Exclude.

// u128 is an address as a number: IPv4 in the low 32 bits.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) add1() u128 {
	lo, c := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + c, lo}
}

func (a u128) sub1() u128 {
	lo, b := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - b, lo}
}

// trailingZeros counts the low zero bits, at most 128.
func (a u128) trailingZeros() int {
	if a.lo != 0 {
		return bits.TrailingZeros64(a.lo)
	}
	if a.hi != 0 {
		return 64 + bits.TrailingZeros64(a.hi)
	}
	return 128
}

// lastOfBlock returns a + 2^k - 1 (the last address of a block of 2^k at a)
// and whether it overflowed.
func (a u128) lastOfBlock(k int) (u128, bool) {
	var m u128
	switch {
	case k >= 128:
		m = u128{^uint64(0), ^uint64(0)}
	case k >= 64:
		m = u128{1<<(k-64) - 1, ^uint64(0)}
	default:
		m = u128{0, 1<<k - 1}
	}
	lo, c := bits.Add64(a.lo, m.lo, 0)
	hi, c2 := bits.Add64(a.hi, m.hi, c)
	return u128{hi, lo}, c2 != 0
}

func fromAddr(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var r u128
	for i := 0; i < 8; i++ {
		r.hi = r.hi<<8 | uint64(b[i])
		r.lo = r.lo<<8 | uint64(b[8+i])
	}
	return r
}

func toAddr(v u128, v6 bool) netip.Addr {
	if !v6 {
		x := uint32(v.lo)
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(v.hi >> (8 * i))
		b[15-i] = byte(v.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

type addrRange struct{ lo, hi u128 }

// addrRanges is a set of addresses: sorted, merged ranges per family.
type addrRanges struct{ v4, v6 []addrRange }

var (
	max4 = u128{0, 0xffffffff}
	max6 = u128{^uint64(0), ^uint64(0)}
)

func allAddrs() addrRanges {
	return addrRanges{v4: []addrRange{{u128{}, max4}}, v6: []addrRange{{u128{}, max6}}}
}

func prefixRange(p netip.Prefix) (addrRange, bool) {
	p = p.Masked()
	lo := fromAddr(p.Addr())
	width := p.Addr().BitLen()
	hi, _ := lo.lastOfBlock(width - p.Bits())
	return addrRange{lo, hi}, p.Addr().Is6()
}

func (s *addrRanges) addPrefix(p netip.Prefix) {
	r, v6 := prefixRange(p)
	if v6 {
		s.v6 = append(s.v6, r)
	} else {
		s.v4 = append(s.v4, r)
	}
}

func mergeRanges(rs []addrRange) []addrRange {
	if len(rs) < 2 {
		return rs
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.cmp(b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if last.hi.cmp(max6) == 0 || r.lo.cmp(last.hi.add1()) <= 0 {
			if r.hi.cmp(last.hi) > 0 {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func (s addrRanges) union(t addrRanges) addrRanges {
	return addrRanges{
		v4: mergeRanges(append(slices.Clone(s.v4), t.v4...)),
		v6: mergeRanges(append(slices.Clone(s.v6), t.v6...)),
	}
}

func complementRanges(rs []addrRange, max u128) []addrRange {
	var out []addrRange
	next := u128{}
	done := false
	for _, r := range rs {
		if r.lo.cmp(next) > 0 {
			out = append(out, addrRange{next, r.lo.sub1()})
		}
		if r.hi.cmp(max) >= 0 {
			done = true
			break
		}
		next = r.hi.add1()
	}
	if !done {
		out = append(out, addrRange{next, max})
	}
	return out
}

func (s addrRanges) complement() addrRanges {
	return addrRanges{v4: complementRanges(s.v4, max4), v6: complementRanges(s.v6, max6)}
}

// minus is s without t: s ∩ ¬t = ¬(¬s ∪ t).
func (s addrRanges) minus(t addrRanges) addrRanges {
	return s.complement().union(t).complement()
}

func (s addrRanges) empty() bool { return len(s.v4) == 0 && len(s.v6) == 0 }

func (s addrRanges) all() bool {
	return len(s.v4) == 1 && s.v4[0] == addrRange{u128{}, max4} &&
		len(s.v6) == 1 && s.v6[0] == addrRange{u128{}, max6}
}

func rangesToPrefixes(rs []addrRange, v6 bool, out []netip.Prefix) []netip.Prefix {
	width := 32
	if v6 {
		width = 128
	}
	for _, r := range rs {
		lo := r.lo
		for {
			k := min(lo.trailingZeros(), width)
			var last u128
			var over bool
			for {
				last, over = lo.lastOfBlock(k)
				if !over && last.cmp(r.hi) <= 0 {
					break
				}
				k--
			}
			out = append(out, netip.PrefixFrom(toAddr(lo, v6), width-k))
			if last.cmp(r.hi) >= 0 {
				break
			}
			lo = last.add1()
		}
	}
	return out
}

func (s addrRanges) prefixes() []netip.Prefix {
	out := rangesToPrefixes(s.v4, false, nil)
	return rangesToPrefixes(s.v6, true, out)
}

// addrSet writes s in its shorter form; ok is false when s is empty.
func (s addrRanges) addrSet() (*AddrSet, bool) {
	if s.empty() {
		return nil, false
	}
	if s.all() {
		return &AddrSet{Any: true}, true
	}
	in := s.prefixes()
	// The complement is only worth writing out when it has fewer ranges:
	// the gaps between hundreds of single addresses make thousands of
	// prefixes.
	c := s.complement()
	if len(c.v4)+len(c.v6) <= len(s.v4)+len(s.v6) {
		if out := c.prefixes(); len(out) < len(in) {
			return &AddrSet{Exclude: out}, true
		}
	}
	return &AddrSet{Include: in}, true
}

// portRanges is a set of ports: sorted, merged inclusive ranges.
type portRanges []PortRange

func (s portRanges) merge() portRanges {
	if len(s) < 2 {
		return s
	}
	slices.SortFunc(s, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if int(r.Lo) <= int(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

func (s portRanges) union(t portRanges) portRanges {
	return append(slices.Clone(s), t...).merge()
}

func (s portRanges) complement() portRanges {
	var out portRanges
	next := 0
	for _, r := range s {
		if int(r.Lo) > next {
			out = append(out, PortRange{uint16(next), r.Lo - 1})
		}
		next = int(r.Hi) + 1
	}
	if next <= 65535 {
		out = append(out, PortRange{uint16(next), 65535})
	}
	return out
}

func (s portRanges) minus(t portRanges) portRanges {
	return s.complement().union(t).complement()
}

func (s portRanges) portSet() (*PortSet, bool) {
	if len(s) == 0 {
		return nil, false
	}
	if len(s) == 1 && s[0] == (PortRange{0, 65535}) {
		return &PortSet{Any: true}, true
	}
	c := s.complement()
	if len(c) < len(s) {
		return &PortSet{Exclude: slices.Clip(c)}, true
	}
	return &PortSet{Include: slices.Clip(s)}, true
}
