package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// SessionRange gives the connections from source ports Ports of address
// Addr a peer identity of their own at ingress: the port range of one
// user's session on a multi-user (RDSH) host, so that a rule whose source
// is a user group decides that user's connections and no one else's. It
// overrides the identity of Addr's range for TCP and UDP only (a session's
// ports mean nothing for other protocols). Egress is keyed by the
// destination and never consults it.
type SessionRange struct {
	Addr     netip.Addr
	Ports    PortRange
	Identity Identity
}

// validSessions checks that session ranges name one address each, are not
// empty, carry a real identity and do not overlap on one address.
func validSessions(ss []SessionRange) error {
	for i, s := range ss {
		if !s.Addr.IsValid() || s.Addr.Is4In6() || s.Addr.Zone() != "" {
			return fmt.Errorf("nft: session range #%d: address %v: want a plain IPv4 or IPv6 address", i, s.Addr)
		}
		if s.Ports.Lo > s.Ports.Hi {
			return fmt.Errorf("nft: session range #%d (%v): ports %d-%d: empty range", i, s.Addr, s.Ports.Lo, s.Ports.Hi)
		}
		if s.Identity == AnyPeer {
			return fmt.Errorf("nft: session range #%d (%v): identity %#x is reserved (AnyPeer)", i, s.Addr, uint32(AnyPeer))
		}
	}
	sorted := slices.Clone(ss)
	slices.SortFunc(sorted, compareSession)
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if a.Addr == b.Addr && b.Ports.Lo <= a.Ports.Hi {
			return fmt.Errorf("nft: session ranges %v ports %d-%d (%d) and %d-%d (%d) overlap",
				a.Addr, a.Ports.Lo, a.Ports.Hi, a.Identity, b.Ports.Lo, b.Ports.Hi, b.Identity)
		}
	}
	return nil
}

func compareSession(a, b SessionRange) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return int(a.Ports.Lo) - int(b.Ports.Lo)
}

// sameSessions reports whether two compiles have the same session ranges.
// Sessions are rules of the ingress chains, which an incremental apply
// does not rewrite: a change needs a full apply.
func sameSessions(a, b *compiled) bool { return slices.Equal(a.sessions, b.sessions) }

// sessionRules returns the ingress chain's rules that set the peer
// identity of each session's source ports, after the address lookup: one
// rule per session and transport protocol. RDSH hosts carry tens of
// sessions, so a linear list costs little; a state without sessions has
// none of them.
func (c *compiled) sessionRules() []ruleSpec {
	var out []ruleSpec
	for _, s := range c.sessions {
		nfproto, off, size := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
		if s.Addr.Is6() {
			nfproto, off, size = unix.NFPROTO_IPV6, 8, 16
		}
		for _, proto := range []byte{ProtoTCP, ProtoUDP} {
			out = append(out, ruleSpec{exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: s.Addr.AsSlice()},
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
				&expr.Range{Op: expr.CmpOpEq, Register: reg1,
					FromData: binary.BigEndian.AppendUint16(nil, s.Ports.Lo),
					ToData:   binary.BigEndian.AppendUint16(nil, s.Ports.Hi)},
				&expr.Immediate{Register: reg1, Data: binary.BigEndian.AppendUint32(nil, uint32(s.Identity))},
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			}})
		}
	}
	return out
}

// sessionPeer returns the identity of the session holding the connection's
// source port at ingress, else peer (the address's identity), as the
// ingress chain's session rules decide.
func (d *Decider) sessionPeer(c Conn, peer Identity) Identity {
	if c.SrcPort == 0 || c.Proto != ProtoTCP && c.Proto != ProtoUDP {
		return peer
	}
	a := c.Peer.Unmap()
	for _, s := range d.st.Sessions {
		if s.Addr == a && s.Ports.Lo <= c.SrcPort && c.SrcPort <= s.Ports.Hi {
			return s.Identity
		}
	}
	return peer
}
