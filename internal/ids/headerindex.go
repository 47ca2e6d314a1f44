package ids

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// headerIndex finds the packet rules without a fast pattern (flags, ports,
// IP reputation lists: header-only rules) by what a packet's header
// offers, so that a packet is not checked against each of them: by
// destination or source port when the rule names a few ports, by address
// when it lists many addresses. The others are kept per transport.
type headerIndex struct {
	dstPort, srcPort map[uint32][]int32 // transport<<16 | port
	srcAddr, dstAddr addrIndex
	// rest by transport: any (ip), tcp, udp, icmp.
	rest [4][]int32
}

// addrIndex maps masked prefixes to rules (IPv4 by length<<32 | address,
// which hashes faster); lens are the prefix lengths in use per family.
type addrIndex struct {
	m4    map[uint64][]int32
	m6    map[netip.Prefix][]int32
	lens4 []int
	lens6 []int
}

// maxIndexedPorts: a rule naming more ports is not indexed by port.
const maxIndexedPorts = 64

func transportSlot(t uint8) int {
	switch t {
	case protoTCP:
		return 1
	case protoUDP:
		return 2
	case protoICMP, protoICMPv6:
		return 3
	}
	return 0
}

func finitePorts(s *rules.PortSet) ([]uint16, bool) {
	if s == nil || s.Any || len(s.Exclude) > 0 || len(s.Include) == 0 {
		return nil, false
	}
	var ps []uint16
	for _, r := range s.Include {
		if int(r.Hi)-int(r.Lo)+len(ps) >= maxIndexedPorts {
			return nil, false
		}
		for p := int(r.Lo); p <= int(r.Hi); p++ {
			ps = append(ps, uint16(p))
		}
	}
	return ps, true
}

// coverage is how many addresses a finite set holds (log-scaled: the
// largest prefix counts), or -1 when it is not finite.
func coverage(s *rules.AddrSet) int {
	if s == nil || s.Any || len(s.Exclude) > 0 || len(s.Include) == 0 {
		return -1
	}
	widest := 0
	for _, p := range s.Include {
		w := p.Addr().BitLen() - p.Bits()
		if p.Addr().Is6() {
			w -= 96 // compare an IPv6 /64 with an IPv4 /0
		}
		widest = max(widest, w)
	}
	return widest
}

func (ix *headerIndex) add(c *crule) {
	r := c.r
	if !r.Bidirectional && (c.transport == protoTCP || c.transport == protoUDP) {
		if ps, ok := finitePorts(r.DstPorts); ok {
			ix.dstPort = addPorts(ix.dstPort, c.transport, ps, c.idx)
			return
		}
		if ps, ok := finitePorts(r.SrcPorts); ok {
			ix.srcPort = addPorts(ix.srcPort, c.transport, ps, c.idx)
			return
		}
	}
	if !r.Bidirectional {
		// The narrower finite side (a reputation list rather than
		// $HOME_NET).
		cs, cd := coverage(r.Src), coverage(r.Dst)
		if cs >= 0 && (cd < 0 || cs <= cd) {
			ix.srcAddr.add(r.Src.Include, c.idx)
			return
		}
		if cd >= 0 {
			ix.dstAddr.add(r.Dst.Include, c.idx)
			return
		}
	}
	slot := transportSlot(c.transport)
	ix.rest[slot] = append(ix.rest[slot], c.idx)
}

func addPorts(m map[uint32][]int32, transport uint8, ps []uint16, idx int32) map[uint32][]int32 {
	if m == nil {
		m = map[uint32][]int32{}
	}
	for _, p := range ps {
		k := uint32(transport)<<16 | uint32(p)
		if l := m[k]; len(l) == 0 || l[len(l)-1] != idx {
			m[k] = append(l, idx)
		}
	}
	return m
}

func key4(a netip.Addr, bits int) uint64 {
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:])
	if bits < 32 {
		v &^= 1<<(32-bits) - 1
	}
	return uint64(bits)<<32 | uint64(v)
}

func (ai *addrIndex) add(ps []netip.Prefix, idx int32) {
	for _, p := range ps {
		p = p.Masked()
		if p.Addr().Is4() {
			if ai.m4 == nil {
				ai.m4 = map[uint64][]int32{}
			}
			k := key4(p.Addr(), p.Bits())
			if l := ai.m4[k]; len(l) == 0 || l[len(l)-1] != idx {
				ai.m4[k] = append(l, idx)
			}
			if !slices.Contains(ai.lens4, p.Bits()) {
				ai.lens4 = append(ai.lens4, p.Bits())
			}
			continue
		}
		if ai.m6 == nil {
			ai.m6 = map[netip.Prefix][]int32{}
		}
		if l := ai.m6[p]; len(l) == 0 || l[len(l)-1] != idx {
			ai.m6[p] = append(l, idx)
		}
		if !slices.Contains(ai.lens6, p.Bits()) {
			ai.lens6 = append(ai.lens6, p.Bits())
		}
	}
}

func (ai *addrIndex) lookup(a netip.Addr, cs *candSet) {
	if !a.IsValid() {
		return
	}
	if a.Is4() {
		if ai.m4 == nil {
			return
		}
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:])
		for _, n := range ai.lens4 {
			m := v
			if n < 32 {
				m &^= 1<<(32-n) - 1
			}
			for _, r := range ai.m4[uint64(n)<<32|uint64(m)] {
				cs.add(r)
			}
		}
		return
	}
	for _, n := range ai.lens6 {
		p, err := a.Prefix(n)
		if err != nil {
			continue
		}
		for _, r := range ai.m6[p] {
			cs.add(r)
		}
	}
}

// candidates adds the indexed header-only rules a packet may match.
func (ix *headerIndex) candidates(p *packet, cs *candSet) {
	if p.hasPorts {
		for _, r := range ix.dstPort[uint32(p.proto)<<16|uint32(p.dport)] {
			cs.add(r)
		}
		for _, r := range ix.srcPort[uint32(p.proto)<<16|uint32(p.sport)] {
			cs.add(r)
		}
	}
	ix.srcAddr.lookup(p.src, cs)
	ix.dstAddr.lookup(p.dst, cs)
	for _, r := range ix.rest[0] {
		cs.add(r)
	}
	if slot := transportSlot(p.proto); slot != 0 {
		for _, r := range ix.rest[slot] {
			cs.add(r)
		}
	}
}
