// Package nft enforces one host's policy in the kernel: it compiles the
// host's desired state (HostState) into a single nftables table, inet
// bulkhead, and applies it as one netlink batch, in full or as a diff of map
// elements, so that the cost per new connection does not grow with the number
// of rules.
//
// # Input
//
// HostState is the explicit, already-resolved form of a policy revision for
// one host: address ranges mapped to numeric identities, and for each local
// workload interface, per direction, an ordered list of entries (peer
// identity or AnyPeer, protocol, port range or ICMP type/code, verdict) whose
// first match decides. The producer (the agent, from the evaluator's output)
// does the group and rule reasoning; this package turns entries into kernel
// maps, resolving overlaps by first match.
//
// # Kernel layout
//
//	table inet bulkhead
//	  set workloads_V  ifname                    local workload interfaces
//	  map ident4_V     ipv4_addr -> identity     interval
//	  map ident6_V     ipv6_addr -> identity     interval
//	  map egress_V     key28 -> ct mark          interval; packets from a workload
//	  map ingress_V    key28 -> ct mark          interval; packets to a workload
//	  set icmp         inet_proto                { icmp, ipv6-icmp } (constant)
//	  chain forward    hook forward, priority filter, policy accept:
//	                   ct state established,related accept (comment: revision)
//	                   iifname @workloads_V jump egress_V
//	                   oifname @workloads_V jump ingress_V
//	  chain egress_V   ct state invalid,untracked drop
//	                   ct mark = World, then ct mark = ident4_V/ident6_V[daddr]
//	                   ct mark = egress_V[iifname . ct mark . l4proto . port] goto verdict
//	                   ct mark = AnyPeer; the same lookup again
//	                   ct mark = egress default, goto verdict
//	  chain ingress_V  the same with saddr, oifname and ingress_V
//	  chain verdict    goto drop or reject by the action bits of the ct mark
//	  chain drop       packet mark = ct mark; NFLOG (rate-limited); drop
//	  chain reject     the same, then TCP RST for TCP, else ICMP/ICMPv6
//	                   administratively prohibited
//
// V is 0 or 1: everything a revision decides with exists twice, and the
// forward chain jumps to one version (see Table for why).
//
// Only new connections leave the forward chain's first rule, so policy size
// costs nothing per packet of an established flow. A connection between two
// workloads of this host passes egress (at the source's interface) and then
// ingress (at the destination's); its final ct mark is the dropping point's
// rule, else the ingress rule, else the egress rule (see Mark). Traffic that
// touches no workload interface is accepted: not ours.
//
// key28 is the 28 bytes nft assembles in registers for the concatenation
// ifname (16) . identity (4) . l4proto (1, padded to 4) . port (2, padded
// to 4). For ICMP and ICMPv6 the port slot holds type<<8|code, the first two
// bytes of the ICMP header ("th sport"): "th dport" there is the checksum.
// The peer identity is carried from the identity lookup to the policy
// lookup in the new connection's ct mark, which the verdict then overwrites.
//
// The policy maps are single-field interval maps ordered by memcmp over the
// 28 bytes (the kernel's rbtree set, which this kernel looks up by binary
// search), not nft concatenation sets (pipapo): on this kernel inserting n
// elements into a pipapo set costs O(n²) (100k elements: 28 s), the rbtree
// O(n log n) (100k: about 0.6 s). The compiler therefore makes every kernel
// element one contiguous interval of the key: one interface, one identity,
// and either one protocol with a port range or a protocol range with all
// ports. nft cannot name such a key's type and prints it as a large
// integer; Describe prints the decoded maps.
//
// # Applying
//
// Table.ApplyFull deletes and recreates the table in one batch (version 0
// decides), then fills version 1 in a second batch that no packet reads.
// Table.ApplyIncremental writes only the element differences into the
// version no packet reads and, in the same batch, turns the forward chain
// (three rules, which also carry the revision) to it. Table.Apply picks the
// diff when it can and falls back to a full apply if the kernel refuses it.
// Either way a revision takes effect in one batch and every packet is
// decided by one revision. Verify reads the table back (revision, active
// version, rules, element counts, optionally every element) to detect
// drift; Remove uninstalls.
package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Identity is a numeric security identity: one per distinct set of groups an
// address belongs to. World (0) is every address no range names.
type Identity uint32

// World is the identity of addresses outside every identity range.
const World Identity = 0

// AnyPeer in an Entry matches every peer, World included. No address range
// may carry it. The kernel looks it up only when the peer's own identity
// found nothing, and the compiler copies into each peer's list the AnyPeer
// entries that come before that peer's last entry, so first-match order
// holds across both lookups.
const AnyPeer Identity = 0xffffffff

// IdentityRange maps the addresses Lo..Hi (inclusive, one family) to an
// identity. Ranges must not overlap.
type IdentityRange struct {
	Lo, Hi   netip.Addr
	Identity Identity
}

// Action is what a verdict does to a new connection.
type Action uint8

const (
	Allow  Action = 1
	Drop   Action = 2
	Reject Action = 3 // TCP RST for TCP, ICMP administratively prohibited otherwise
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Drop:
		return "drop"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Verdict is the decision of one rule at one enforcement point.
type Verdict struct {
	Rule   uint32 // rule id, 1..MaxRule (1 is the default rule)
	Action Action
	Log    bool // kept in the ct mark for flow records; drops are always logged
}

// PortRange is an inclusive range of destination ports for TCP, UDP, SCTP,
// DCCP and UDP-Lite, or of type<<8|code for ICMP and ICMPv6 (see ICMPType,
// ICMPTypeCode). There is no "unset" value: use AllPorts for any.
type PortRange struct{ Lo, Hi uint16 }

// AllPorts matches every port (or every ICMP type and code).
var AllPorts = PortRange{0, 0xffff}

// Port matches one port.
func Port(p uint16) PortRange { return PortRange{p, p} }

// Ports matches lo..hi.
func Ports(lo, hi uint16) PortRange { return PortRange{lo, hi} }

// ICMPType matches one ICMP/ICMPv6 type with any code.
func ICMPType(t uint8) PortRange { return PortRange{uint16(t) << 8, uint16(t)<<8 | 0xff} }

// ICMPTypeCode matches one ICMP/ICMPv6 type and code.
func ICMPTypeCode(t, c uint8) PortRange {
	v := uint16(t)<<8 | uint16(c)
	return PortRange{v, v}
}

// IP protocol numbers this package treats specially.
const (
	ProtoAny    uint8 = 0
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoDCCP   uint8 = 33
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
	ProtoUDPLit uint8 = 136
)

// hasPorts reports whether the protocol's entries may narrow Ports.
func hasPorts(p uint8) bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoDCCP, ProtoSCTP, ProtoUDPLit, ProtoICMP, ProtoICMPv6:
		return true
	}
	return false
}

// Entry is one line of a workload's decision list for one direction.
type Entry struct {
	// Peer is the identity of the other end: the destination for egress,
	// the source for ingress; AnyPeer for every peer.
	Peer Identity
	// Proto is the IP protocol number; ProtoAny (0) matches every protocol
	// and then Ports must be AllPorts. Protocols without ports (anything but
	// TCP, UDP, SCTP, DCCP, UDP-Lite, ICMP, ICMPv6) also need AllPorts.
	Proto uint8
	Ports PortRange
	Verdict
}

// Workload is a local workload: the host-side interface its traffic crosses
// and its two decision lists. Each list is ordered: the first entry that
// matches a new connection decides it; entries may overlap (the compiler
// resolves them), though a producer that already made them disjoint loses
// nothing. No match means the direction's default.
type Workload struct {
	Name      string
	Interface string // host-side interface name (veth/tap), at most 15 bytes
	Egress    []Entry
	Ingress   []Entry
}

// HostState is everything the kernel needs for one host at one revision.
type HostState struct {
	Revision   uint64
	Identities []IdentityRange
	Workloads  []Workload
	// Defaults decide what no entry matched; the policy's default rule has
	// id 1 (policy.DefaultRuleID).
	EgressDefault  Verdict
	IngressDefault Verdict
}

// Validate checks what the kernel layout relies on and names the offending
// object.
func (s *HostState) Validate() error {
	_, _, err := s.validate()
	return err
}

// validate also returns the identity ranges split by family and sorted.
func (s *HostState) validate() (v4, v6 []IdentityRange, err error) {
	if err := validVerdict(s.EgressDefault); err != nil {
		return nil, nil, fmt.Errorf("nft: egress default: %w", err)
	}
	if err := validVerdict(s.IngressDefault); err != nil {
		return nil, nil, fmt.Errorf("nft: ingress default: %w", err)
	}
	if v4, v6, err = validRanges(s.Identities); err != nil {
		return nil, nil, err
	}
	names := map[string]bool{}
	ifaces := map[string]bool{}
	for i := range s.Workloads {
		w := &s.Workloads[i]
		if w.Name == "" {
			return nil, nil, fmt.Errorf("nft: workload #%d: empty name", i)
		}
		if names[w.Name] {
			return nil, nil, fmt.Errorf("nft: workload %s: duplicate name", w.Name)
		}
		names[w.Name] = true
		if w.Interface == "" || len(w.Interface) > 15 {
			return nil, nil, fmt.Errorf("nft: workload %s: interface %q: want 1-15 bytes", w.Name, w.Interface)
		}
		if ifaces[w.Interface] {
			return nil, nil, fmt.Errorf("nft: workload %s: interface %s used twice", w.Name, w.Interface)
		}
		ifaces[w.Interface] = true
		for _, d := range []struct {
			dir  string
			list []Entry
		}{{"egress", w.Egress}, {"ingress", w.Ingress}} {
			for j, e := range d.list {
				if err := validEntry(e); err != nil {
					return nil, nil, fmt.Errorf("nft: workload %s: %s entry #%d: %w", w.Name, d.dir, j, err)
				}
			}
		}
	}
	return v4, v6, nil
}

func validVerdict(v Verdict) error {
	if v.Action < Allow || v.Action > Reject {
		return fmt.Errorf("action %d: want allow, drop or reject", v.Action)
	}
	if v.Rule == 0 || v.Rule > MaxRule {
		return fmt.Errorf("rule id %d: want 1..%d", v.Rule, MaxRule)
	}
	return nil
}

func validEntry(e Entry) error {
	if err := validVerdict(e.Verdict); err != nil {
		return err
	}
	if e.Ports.Lo > e.Ports.Hi {
		return fmt.Errorf("ports %d-%d: empty range", e.Ports.Lo, e.Ports.Hi)
	}
	if !hasPorts(e.Proto) && e.Ports != AllPorts {
		return fmt.Errorf("protocol %d has no ports: want AllPorts", e.Proto)
	}
	return nil
}

func validRanges(rs []IdentityRange) (v4, v6 []IdentityRange, err error) {
	for i, r := range rs {
		if !r.Lo.IsValid() || !r.Hi.IsValid() || r.Lo.Is4() != r.Hi.Is4() || r.Lo.Is4In6() || r.Hi.Is4In6() {
			return nil, nil, fmt.Errorf("nft: identity range #%d (%v-%v): want two addresses of one family", i, r.Lo, r.Hi)
		}
		if r.Hi.Less(r.Lo) {
			return nil, nil, fmt.Errorf("nft: identity range #%d (%v-%v): empty", i, r.Lo, r.Hi)
		}
		if r.Identity == AnyPeer {
			return nil, nil, fmt.Errorf("nft: identity range #%d (%v-%v): identity %#x is reserved (AnyPeer)", i, r.Lo, r.Hi, uint32(AnyPeer))
		}
		if r.Lo.Zone() != "" || r.Hi.Zone() != "" {
			return nil, nil, fmt.Errorf("nft: identity range #%d (%v-%v): zones not allowed", i, r.Lo, r.Hi)
		}
		if r.Lo.Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	byLo := func(a, b IdentityRange) int { return a.Lo.Compare(b.Lo) }
	for _, list := range [][]IdentityRange{v4, v6} {
		if !slices.IsSortedFunc(list, byLo) {
			slices.SortFunc(list, byLo)
		}
		for i := 1; i < len(list); i++ {
			if !list[i-1].Hi.Less(list[i].Lo) {
				a, b := list[i-1], list[i]
				return nil, nil, fmt.Errorf("nft: identity ranges %v-%v (%d) and %v-%v (%d) overlap", a.Lo, a.Hi, a.Identity, b.Lo, b.Hi, b.Identity)
			}
		}
	}
	return v4, v6, nil
}

// ErrNotApplied is returned (wrapped) by an incremental apply when this
// Table has applied nothing yet, or its last full apply failed.
var ErrNotApplied = errors.New("nft: table not applied")
