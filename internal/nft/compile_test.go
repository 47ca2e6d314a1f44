package nft

import (
	"bytes"
	"math/rand"
	"net/netip"
	"sort"
	"strings"
	"testing"
)

// kernelLookup does in Go what the egress/ingress chain does in the kernel,
// on the compiled intervals: peer identity lookup, then the policy map with
// that identity, then with AnyPeer, then the default.
func kernelLookup(c *compiled, ifname string, peer Identity, proto uint8, port uint16, ingress bool) Mark {
	ivs, def := c.policy(false), c.egressDef
	if ingress {
		ivs, def = c.policy(true), c.ingressDef
	}
	for _, id := range []Identity{peer, AnyPeer} {
		if m, ok := findInterval(ivs, policyKey(ifname, id, proto, port)); ok {
			return Mark(be32(m))
		}
	}
	return def
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// findInterval finds the interval holding key, as the kernel's rbtree does.
func findInterval(ivs []interval, key []byte) ([]byte, bool) {
	i := sort.Search(len(ivs), func(i int) bool { return bytes.Compare(ivs[i].start.key, key) > 0 }) - 1
	if i < 0 {
		return nil, false
	}
	iv := ivs[i]
	if iv.stop != nil && bytes.Compare(key, iv.stop.key) >= 0 {
		return nil, false
	}
	return iv.start.val, true
}

func identLookup(c *compiled, a netip.Addr) Identity {
	ivs := c.ident4
	if a.Is6() {
		ivs = c.ident6
	}
	if v, ok := findInterval(ivs, a.AsSlice()); ok {
		return Identity(be32(v))
	}
	return World
}

// firstMatch is the reference semantics of an entry list.
func firstMatch(entries []Entry, def Verdict, peer Identity, proto uint8, port uint16) Verdict {
	for _, e := range entries {
		if (e.Peer == peer || e.Peer == AnyPeer) && (e.Proto == ProtoAny || e.Proto == proto) && e.Ports.Lo <= port && port <= e.Ports.Hi {
			return e.Verdict
		}
	}
	return def
}

// TestCompileMatchesFirstMatch checks, for random overlapping entry lists
// and random packets, that the compiled maps decide exactly what a linear
// first-match walk decides.
func TestCompileMatchesFirstMatch(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	protos := []uint8{ProtoAny, ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6, 47, ProtoSCTP}
	peers := []Identity{World, 5, 6, 7, AnyPeer}
	randPorts := func(proto uint8) PortRange {
		if !hasPorts(proto) || rng.Intn(5) == 0 {
			return AllPorts
		}
		lo := uint16(rng.Intn(40))
		if rng.Intn(3) == 0 {
			return Port(lo)
		}
		return Ports(lo, lo+uint16(rng.Intn(20)))
	}
	for iter := 0; iter < 300; iter++ {
		var entries []Entry
		for n := rng.Intn(25); n > 0; n-- {
			p := protos[rng.Intn(len(protos))]
			entries = append(entries, Entry{
				Peer: peers[rng.Intn(len(peers))], Proto: p, Ports: randPorts(p),
				Verdict: Verdict{Rule: uint32(10 + rng.Intn(5)), Action: Action(1 + rng.Intn(3)), Log: rng.Intn(2) == 0},
			})
		}
		def := Verdict{Rule: 1, Action: Drop}
		st := &HostState{Revision: 1, EgressDefault: def, IngressDefault: Verdict{Rule: 1, Action: Allow},
			Workloads: []Workload{{Name: "a", Interface: "bhwa", Egress: entries, Ingress: entries[:len(entries)/2]}}}
		c, err := compile(st, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Every kernel interval is well formed and they do not overlap.
		for _, ivs := range [][]interval{c.policy(false), c.policy(true)} {
			for i, iv := range ivs {
				if iv.stop == nil || bytes.Compare(iv.start.key, iv.stop.key) >= 0 {
					t.Fatalf("iter %d: bad interval %x-%v", iter, iv.start.key, iv.stop)
				}
				if i > 0 && bytes.Compare(ivs[i-1].stop.key, iv.start.key) > 0 {
					t.Fatalf("iter %d: intervals overlap or are unsorted at %d", iter, i)
				}
			}
		}
		for probe := 0; probe < 400; probe++ {
			peer := peers[rng.Intn(len(peers)-1)] // a real peer is never AnyPeer
			if rng.Intn(4) == 0 {
				peer = Identity(100 + rng.Intn(3)) // unknown to every entry
			}
			proto := protos[1+rng.Intn(len(protos)-1)]
			if rng.Intn(10) == 0 {
				proto = uint8(rng.Intn(256))
			}
			port := uint16(rng.Intn(70))
			if rng.Intn(10) == 0 {
				port = uint16(rng.Intn(65536))
			}
			for _, ingress := range []bool{false, true} {
				list, d := entries, def
				if ingress {
					list, d = entries[:len(entries)/2], st.IngressDefault
				}
				want := MakeMark(firstMatch(list, d, peer, proto, port), ingress)
				got := kernelLookup(c, "bhwa", peer, proto, port, ingress)
				if got != want {
					t.Fatalf("iter %d ingress=%v peer %d proto %d port %d: kernel %v, want %v\nentries: %+v", iter, ingress, peer, proto, port, got, want, list)
				}
			}
		}
	}
}

func TestResolveMerges(t *testing.T) {
	allow := Verdict{Rule: 7, Action: Allow}
	deny := Verdict{Rule: 8, Action: Drop}
	tests := []struct {
		name    string
		entries []Entry
		want    []box
	}{
		{"shadowed", []Entry{
			{Peer: 5, Proto: ProtoTCP, Ports: Ports(80, 90), Verdict: allow},
			{Peer: 5, Proto: ProtoTCP, Ports: Port(85), Verdict: deny},
		}, []box{{5, 6, 6, 80, 90, allow}}},
		{"split", []Entry{
			{Peer: 5, Proto: ProtoTCP, Ports: Port(85), Verdict: deny},
			{Peer: 5, Proto: ProtoTCP, Ports: Ports(80, 90), Verdict: allow},
		}, []box{{5, 6, 6, 80, 84, allow}, {5, 6, 6, 85, 85, deny}, {5, 6, 6, 86, 90, allow}}},
		{"any proto fills around specific", []Entry{
			{Peer: 5, Proto: ProtoTCP, Ports: Port(22), Verdict: allow},
			{Peer: 5, Proto: ProtoAny, Ports: AllPorts, Verdict: deny},
			{Peer: 5, Proto: ProtoUDP, Ports: AllPorts, Verdict: allow}, // shadowed
		}, []box{
			{5, 0, 5, 0, 0xffff, deny},
			{5, 6, 6, 0, 21, deny}, {5, 6, 6, 22, 22, allow}, {5, 6, 6, 23, 0xffff, deny},
			{5, 7, 255, 0, 0xffff, deny},
		}},
		{"adjacent equal verdicts merge", []Entry{
			{Peer: 5, Proto: ProtoTCP, Ports: Ports(1, 10), Verdict: allow},
			{Peer: 5, Proto: ProtoTCP, Ports: Ports(11, 20), Verdict: allow},
		}, []box{{5, 6, 6, 1, 20, allow}}},
		{"any peer copied before own last entry only", []Entry{
			{Peer: AnyPeer, Proto: ProtoTCP, Ports: Port(1), Verdict: deny},
			{Peer: 5, Proto: ProtoTCP, Ports: Port(2), Verdict: allow},
			{Peer: AnyPeer, Proto: ProtoTCP, Ports: Port(3), Verdict: deny},
		}, []box{
			{5, 6, 6, 1, 1, deny}, {5, 6, 6, 2, 2, allow},
			{AnyPeer, 6, 6, 1, 1, deny}, {AnyPeer, 6, 6, 3, 3, deny},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.entries)
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("box %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestIdentityIntervals(t *testing.T) {
	st := &HostState{
		EgressDefault: Verdict{Rule: 1, Action: Allow}, IngressDefault: Verdict{Rule: 1, Action: Allow},
		Identities: []IdentityRange{
			{Lo: netip.MustParseAddr("10.0.0.0"), Hi: netip.MustParseAddr("10.0.0.255"), Identity: 3},
			{Lo: netip.MustParseAddr("10.0.1.0"), Hi: netip.MustParseAddr("10.0.1.0"), Identity: 4}, // adjacent
			{Lo: netip.MustParseAddr("255.255.255.0"), Hi: netip.MustParseAddr("255.255.255.255"), Identity: 5},
			{Lo: netip.MustParseAddr("fd00::1"), Hi: netip.MustParseAddr("fd00::1"), Identity: 6},
		},
	}
	c, err := compile(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]Identity{
		"9.255.255.255": World, "10.0.0.0": 3, "10.0.0.255": 3, "10.0.1.0": 4, "10.0.1.1": World,
		"255.255.255.255": 5, "fd00::1": 6, "fd00::2": World, "::": World,
	} {
		if got := identLookup(c, netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: identity %d, want %d", addr, got, want)
		}
	}
	if c.ident4[2].stop != nil {
		t.Errorf("range reaching 255.255.255.255 has an end element")
	}
	if n := c.counts()[MapIdent4]; n != 5 {
		t.Errorf("ident4 has %d elements, want 5 (3 starts, 2 ends)", n)
	}
}

func TestValidate(t *testing.T) {
	ok := Verdict{Rule: 1, Action: Allow}
	base := func() *HostState {
		return &HostState{EgressDefault: ok, IngressDefault: ok, Workloads: []Workload{{Name: "a", Interface: "bhwa"}}}
	}
	tests := []struct {
		name   string
		mutate func(*HostState)
		want   string
	}{
		{"valid", func(*HostState) {}, ""},
		{"no action", func(s *HostState) { s.EgressDefault.Action = 0 }, "egress default: action 0"},
		{"rule too big", func(s *HostState) { s.IngressDefault.Rule = MaxRule + 1 }, "ingress default: rule id"},
		{"long ifname", func(s *HostState) { s.Workloads[0].Interface = "0123456789abcdef" }, "interface"},
		{"dup ifname", func(s *HostState) {
			s.Workloads = append(s.Workloads, Workload{Name: "b", Interface: "bhwa"})
		}, "used twice"},
		{"ports on gre", func(s *HostState) {
			s.Workloads[0].Egress = []Entry{{Peer: 1, Proto: 47, Ports: Port(80), Verdict: ok}}
		}, "egress entry #0: protocol 47 has no ports"},
		{"any proto with ports", func(s *HostState) {
			s.Workloads[0].Ingress = []Entry{{Peer: 1, Proto: ProtoAny, Ports: Port(80), Verdict: ok}}
		}, "ingress entry #0: protocol 0 has no ports"},
		{"inverted ports", func(s *HostState) {
			s.Workloads[0].Ingress = []Entry{{Peer: 1, Proto: ProtoTCP, Ports: Ports(9, 8), Verdict: ok}}
		}, "empty range"},
		{"overlap", func(s *HostState) {
			s.Identities = []IdentityRange{
				{Lo: netip.MustParseAddr("10.0.0.0"), Hi: netip.MustParseAddr("10.0.0.9"), Identity: 1},
				{Lo: netip.MustParseAddr("10.0.0.9"), Hi: netip.MustParseAddr("10.0.0.9"), Identity: 2},
			}
		}, "overlap"},
		{"mixed family", func(s *HostState) {
			s.Identities = []IdentityRange{{Lo: netip.MustParseAddr("10.0.0.0"), Hi: netip.MustParseAddr("::1"), Identity: 1}}
		}, "one family"},
		{"reserved identity", func(s *HostState) {
			s.Identities = []IdentityRange{{Lo: netip.MustParseAddr("10.0.0.0"), Hi: netip.MustParseAddr("10.0.0.0"), Identity: AnyPeer}}
		}, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.mutate(s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMark(t *testing.T) {
	v := Verdict{Rule: 123456, Action: Reject, Log: true}
	m := MakeMark(v, true)
	if m.Verdict() != v || !m.Ingress() || m.Rule() != 123456 || m.Action() != Reject {
		t.Fatalf("round trip: %v -> %#x -> %+v", v, uint32(m), m.Verdict())
	}
	if uint32(m) != 123456|3<<24|1<<26|1<<27 {
		t.Fatalf("layout: %#x", uint32(m))
	}
	if got := m.String(); got != "reject rule 123456 at ingress log" {
		t.Errorf("String() = %q", got)
	}
	if Mark(0).Action() != 0 {
		t.Error("zero mark has an action")
	}
}
