package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Describe compiles st and prints what the kernel maps will hold, decoded:
// what `nft list table inet bulkhead` shows, with readable keys where nft
// can only print the 28-byte policy keys as integers.
func Describe(st *HostState) (string, error) {
	c, err := compile(st, nil)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d\n", c.revision)
	fmt.Fprintf(&b, "egress default:  %v (ct mark %#08x)\n", c.egressDef, uint32(c.egressDef))
	fmt.Fprintf(&b, "ingress default: %v (ct mark %#08x)\n", c.ingressDef, uint32(c.ingressDef))
	b.WriteString("workloads:")
	for _, k := range c.workloads {
		fmt.Fprintf(&b, " %s", strings.TrimRight(string(k), "\x00"))
	}
	b.WriteString("\n")
	for _, s := range []struct {
		name string
		ivs  []interval
	}{{MapIdent4, c.ident4}, {MapIdent6, c.ident6}} {
		fmt.Fprintf(&b, "%s:\n", s.name)
		for _, iv := range s.ivs {
			lo := addrFromKey(iv.start.key)
			hi := lo
			if iv.stop != nil {
				hi = addrFromKey(iv.stop.key).Prev()
			} else { // runs to the top of the address space
				hi = lastAddr(lo)
			}
			fmt.Fprintf(&b, "  %s-%s -> identity %d\n", lo, hi, binary.BigEndian.Uint32(iv.start.val))
		}
	}
	if len(c.sessions) > 0 {
		b.WriteString("sessions (ingress, tcp and udp):\n")
		for _, s := range c.sessions {
			fmt.Fprintf(&b, "  %s sport %d-%d -> identity %d\n", s.Addr, s.Ports.Lo, s.Ports.Hi, s.Identity)
		}
	}
	for _, s := range []struct {
		name string
		ivs  []interval
	}{{MapEgress, c.policy(false)}, {MapIngress, c.policy(true)}} {
		fmt.Fprintf(&b, "%s:\n", s.name)
		for _, iv := range s.ivs {
			b.WriteString("  " + describeInterval(iv) + "\n")
		}
	}
	for i, f := range st.FQDNSets {
		fam := ""
		if f.Family != 0 {
			fam = fmt.Sprintf(" IPv%d only", f.Family)
		}
		fmt.Fprintf(&b, "fqdn set %d (%s, %s)%s: %s\n", i+1, FQDNSetName(i+1, false), FQDNSetName(i+1, true), fam, strings.Join(f.Patterns, " "))
	}
	for k, d := range c.dispatch.list {
		fmt.Fprintf(&b, "FQDN dispatch %d:", k+1)
		for _, cd := range d.conds {
			fmt.Fprintf(&b, " in fqdn set %d: %v;", cd.set, cd.mark)
		}
		if d.hasFall {
			fmt.Fprintf(&b, " else %v\n", d.fallback)
		} else {
			b.WriteString(" else the next lookup\n")
		}
	}
	return b.String(), nil
}

func lastAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}

func describeInterval(iv interval) string {
	ifname, peer, pLo, portLo, err := decodePolicyKey(iv.start.key)
	if err != nil || iv.stop == nil {
		return fmt.Sprintf("%x: %v", iv.start.key, err)
	}
	last := make([]byte, len(iv.stop.key))
	copy(last, iv.stop.key)
	last[len(last)-1]-- // stop is last+1 in the padding byte
	_, _, pHi, portHi, _ := decodePolicyKey(last)
	peerS := fmt.Sprintf("peer %d", peer)
	if peer == AnyPeer {
		peerS = "any peer"
	}
	m := Mark(binary.BigEndian.Uint32(iv.start.val))
	return fmt.Sprintf("%-15s %-12s %-28s -> %v (%#08x)", ifname, peerS, describeL4(pLo, pHi, portLo, portHi), m, uint32(m))
}

func protoName(p uint8) string {
	switch p {
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto %d", p)
}

func describeL4(pLo, pHi uint8, lo, hi uint16) string {
	if pLo != pHi {
		if pLo == 0 && pHi == 255 {
			return "any protocol"
		}
		return fmt.Sprintf("protocols %d-%d", pLo, pHi)
	}
	name := protoName(pLo)
	switch {
	case lo == 0 && hi == 0xffff:
		return name
	case pLo == ProtoICMP || pLo == ProtoICMPv6:
		switch {
		case lo == hi:
			return fmt.Sprintf("%s type %d code %d", name, lo>>8, lo&0xff)
		case lo&0xff == 0 && hi&0xff == 0xff && lo>>8 == hi>>8:
			return fmt.Sprintf("%s type %d", name, lo>>8)
		}
		return fmt.Sprintf("%s type/code %d/%d-%d/%d", name, lo>>8, lo&0xff, hi>>8, hi&0xff)
	case lo == hi:
		return fmt.Sprintf("%s %d", name, lo)
	}
	return fmt.Sprintf("%s %d-%d", name, lo, hi)
}
