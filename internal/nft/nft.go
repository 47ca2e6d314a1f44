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
//	  set l7bare4/6    header sizes of TCP packets without payload (constant)
//	  set fqdnN_v4/v6  addresses of FQDN set N, flags timeout (the agent's
//	                   DNS snooper writes them; not versioned)
//	  chain forward    hook forward, priority filter, policy accept:
//	                   ct mark & (L7 pending | drop bit) jump l7 (comment: revision)
//	                   ct state established,related accept
//	                   iifname @workloads_V jump egress_V
//	                   ct mark L7 pending: packet mark = ct mark (kept across ingress)
//	                   oifname @workloads_V jump ingress_V
//	                   packet mark pending, ct mark not: ct mark = packet mark
//	                   ct mark L7 pending: jump l7 (the first packet)
//	  chain egress_V   ct state invalid,untracked drop
//	                   ct mark = World, then ct mark = ident4_V/ident6_V[daddr]
//	                   ct mark = egress_V[iifname . ct mark . l4proto . port] goto verdict
//	                   (with FQDN entries: unless the value is an FQDN
//	                   dispatch, whose set tests follow; see fqdn.go)
//	                   ct mark = AnyPeer; the same lookup again
//	                   ct mark = egress default, goto verdict
//	  chain ingress_V  the same with saddr, oifname and ingress_V; after the
//	                   identity lookup, one rule per session range and
//	                   tcp/udp: saddr . sport in range: ct mark = its
//	                   identity (HostState.Sessions, users of RDSH hosts;
//	                   a change of them applies in full)
//	  chain verdict    goto drop or reject by the action bits of the ct mark
//	  chain drop       packet mark = ct mark; NFLOG (rate-limited); drop
//	  chain reject     the same, then TCP RST for TCP, else ICMP/ICMPv6
//	                   administratively prohibited
//	  chain l7         decided (an L7 drop or reject): goto verdict
//	                   packet mark has the L7 verdict bit (NF_REPEAT from the
//	                   queue reader): ct mark = it, packet mark = 0, goto l7done
//	                   TCP without payload (@l7bare4/6): accept
//	                   payload: packet mark = ct mark (| reply bit), NFQUEUE
//	                   (xt target, Config.L7Queue, bypass = HostState.L7FailOpen)
//	  chain l7done     jump verdict, accept
//
// An L7 entry (Entry.Profile) puts a pending mark in the ct mark (Mark):
// the handshake passes in the kernel, the payload packets go to the queue
// reader (internal/l7), which classifies the connection, resumes the first-
// match walk of both points in Go (Decider) and gives the packet back with
// NF_REPEAT and the final mark as packet mark; this kernel cannot set the ct
// mark from a queue verdict, so chain l7 copies it. Later packets are
// decided in the kernel. Connections no L7 entry concerns pay one ct mark
// test per packet.
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
// Table.ApplyIncremental writes only the element differences into the
// version no packet reads (once an RCU grace period has passed since the
// forward chain left it), then, in a second batch that changes no element,
// turns the forward chain (which also carries the revision) to it: the
// kernel publishes a batch's element changes while its commit goes on, not
// at the instant the rules change, so a set a packet can reach must never
// change in the batch that points packets at it. Table.ApplyFull does the
// same with the standby version rebuilt from scratch, then rebuilds the
// other; only for a table in an unknown state (the first apply, drift, a
// change of the FQDN sets) does it delete and recreate the table in one
// batch. Table.Apply picks the diff when it can and falls back to a full
// apply if the kernel refuses it. Either way a revision takes effect in one
// batch and every packet is decided by one revision. Verify reads the table back (revision, active
// version, rules, element counts, optionally every element) to detect
// drift; Remove uninstalls.
package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
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
	// Profile, when not 0, makes this an L7 entry: HostState.Profiles[Profile-1]
	// must also match the connection's application for the entry to decide.
	// The kernel marks a connection that reaches it "L7 pending" and lets
	// its handshake pass; the agent's queue reader sees its payload,
	// classifies it and resumes the first-match walk from this entry (see
	// Mark and the package doc).
	Profile int
	// FQDN, when not 0, makes this an FQDN entry (egress only): it also
	// needs the destination address in HostState.FQDNSets[FQDN-1]'s kernel
	// sets, which the agent's DNS snooper fills with the addresses of the
	// names the set's patterns match. An entry is not both L7 and FQDN.
	FQDN int
}

// FQDNSet is a list of FQDN patterns ("www.example.com", "*.example.com",
// "*") whose resolved addresses live in the table's sets FQDNSetName(i,
// false/true), i its 1-based number.
type FQDNSet struct {
	Patterns []string
	// Family, when 4 or 6, limits the set's entries to destinations of
	// that family (a rule whose source holds only the workload's IPv4
	// or IPv6 addresses); 0 is both.
	Family uint8
}

// FQDNSetName is the kernel name of FQDN set i's (1-based) IPv4 or IPv6
// set: fqdn3_v4, fqdn3_v6.
func FQDNSetName(i int, v6 bool) string {
	if v6 {
		return fmt.Sprintf("fqdn%d_v6", i)
	}
	return fmt.Sprintf("fqdn%d_v4", i)
}

// Profile is the L7 condition of a rule: the connection's application must
// match one of Apps. It is the union of the apps of every context profile
// the rule names; profiles with FQDNs are not expressed here.
type Profile struct {
	Apps []AppMatch
}

// AppMatch is one application of a Profile, as a ContextProfile writes it:
// an AppID ("APP_TLS") and optional TLS version bounds ("1.2"). An empty
// Name matches every identified application (a profile without apps).
type AppMatch struct {
	Name       string
	MinVersion string
	MaxVersion string
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
	// Profiles are the L7 conditions Entry.Profile points into.
	Profiles []Profile
	// L7FailOpen says what happens to the payload of a connection that
	// waits for an L7 decision while no queue reader runs: accepted (true)
	// or dropped (false, the default: an L7 rule that cannot be checked
	// does not allow).
	L7FailOpen bool
	// FQDNSets are the name patterns Entry.FQDN points into.
	FQDNSets []FQDNSet
	// Sessions give users' source port ranges their own peer identity at
	// ingress (see SessionRange).
	Sessions []SessionRange
	// IDS is what the host's IDS/IPS inspects (nil: nothing).
	IDS *IDSState
}

// HasFQDN reports whether any entry needs an FQDN set: the agent then runs
// its DNS snooper to fill them.
func (s *HostState) HasFQDN() bool {
	for i := range s.Workloads {
		for _, e := range s.Workloads[i].Egress {
			if e.FQDN != 0 {
				return true
			}
		}
	}
	return false
}

// HasL7 reports whether any entry needs an L7 decision: the agent then runs
// a queue reader.
func (s *HostState) HasL7() bool {
	for i := range s.Workloads {
		for _, list := range [][]Entry{s.Workloads[i].Egress, s.Workloads[i].Ingress} {
			for _, e := range list {
				if e.Profile != 0 {
					return true
				}
			}
		}
	}
	return false
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
	for i, p := range s.Profiles {
		if len(p.Apps) == 0 {
			return nil, nil, fmt.Errorf("nft: profile #%d: no apps", i+1)
		}
		for j, a := range p.Apps {
			for _, v := range []string{a.MinVersion, a.MaxVersion} {
				if _, ok := ParseVersion(v); v != "" && !ok {
					return nil, nil, fmt.Errorf("nft: profile #%d: app #%d (%s): version %q: want a version like 1.2", i+1, j, a.Name, v)
				}
			}
		}
	}
	for i, f := range s.FQDNSets {
		if len(f.Patterns) == 0 {
			return nil, nil, fmt.Errorf("nft: fqdn set #%d: no patterns", i+1)
		}
		if f.Family != 0 && f.Family != 4 && f.Family != 6 {
			return nil, nil, fmt.Errorf("nft: fqdn set #%d: family %d: want 0 (both), 4 or 6", i+1, f.Family)
		}
		for j, p := range f.Patterns {
			if p == "" || len(p) > 255 || strings.ContainsAny(p, " \t\x00") {
				return nil, nil, fmt.Errorf("nft: fqdn set #%d: pattern #%d %q: not a name", i+1, j, p)
			}
		}
	}
	if v4, v6, err = validRanges(s.Identities); err != nil {
		return nil, nil, err
	}
	if err := validSessions(s.Sessions); err != nil {
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
				if e.Profile < 0 || e.Profile > len(s.Profiles) {
					return nil, nil, fmt.Errorf("nft: workload %s: %s entry #%d: profile %d: want 0..%d", w.Name, d.dir, j, e.Profile, len(s.Profiles))
				}
				switch {
				case e.FQDN < 0 || e.FQDN > len(s.FQDNSets):
					return nil, nil, fmt.Errorf("nft: workload %s: %s entry #%d: fqdn set %d: want 0..%d", w.Name, d.dir, j, e.FQDN, len(s.FQDNSets))
				case e.FQDN != 0 && d.dir == "ingress":
					return nil, nil, fmt.Errorf("nft: workload %s: ingress entry #%d: fqdn set %d: FQDN entries are egress only", w.Name, j, e.FQDN)
				case e.FQDN != 0 && e.Profile != 0:
					return nil, nil, fmt.Errorf("nft: workload %s: %s entry #%d: both L7 profile and fqdn set", w.Name, d.dir, j)
				}
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
