package nft

import (
	"math/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/bulkhead/bulkhead/internal/netlab"
)

// walkFQDN is the first-match walk with FQDN entries, given which sets hold
// the destination: the model the kernel must agree with.
func walkFQDN(list []Entry, def Verdict, peer Identity, proto uint8, port uint16, in map[int]bool) Verdict {
	for _, e := range list {
		if e.Peer != AnyPeer && e.Peer != peer {
			continue
		}
		if e.Proto != ProtoAny && (e.Proto != proto || port < e.Ports.Lo || port > e.Ports.Hi) {
			continue
		}
		if e.FQDN != 0 && !in[e.FQDN] {
			continue
		}
		return e.Verdict
	}
	return def
}

// kernelWalk decides as the compiled boxes and dispatches do: the peer's
// own boxes, then AnyPeer's, then the default; a dispatch tests its sets
// in order and falls back (or misses).
func kernelWalk(boxes []box, ds *dispatches, def Verdict, peer Identity, proto uint8, port uint16, in map[int]bool) Verdict {
	for _, p := range []Identity{peer, AnyPeer} {
		for _, b := range boxes {
			if b.peer != p || proto < b.protoLo || proto > b.protoHi || port < b.portLo || port > b.portHi {
				continue
			}
			if b.v.Action != dispatchAct {
				return b.v
			}
			d := ds.list[b.v.Rule-1]
			for _, c := range d.conds {
				if in[c.set] {
					return c.mark.Verdict()
				}
			}
			if d.hasFall {
				return d.fallback.Verdict()
			}
			break // a miss: the next lookup
		}
	}
	return def
}

func TestResolveFQDN(t *testing.T) {
	v := func(rule uint32, a Action) Verdict { return Verdict{Rule: rule, Action: a} }
	const peerA, peerB = Identity(5), Identity(6)
	list := []Entry{
		{Peer: peerA, Proto: ProtoTCP, Ports: Port(80), Verdict: v(10, Drop)},
		{Peer: AnyPeer, Proto: ProtoTCP, Ports: Ports(80, 90), Verdict: v(11, Allow), FQDN: 1},
		{Peer: AnyPeer, Proto: ProtoAny, Ports: AllPorts, Verdict: v(12, Reject), FQDN: 2},
		{Peer: peerB, Proto: ProtoTCP, Ports: Ports(85, 100), Verdict: v(13, Drop)},
		{Peer: AnyPeer, Proto: ProtoUDP, Ports: Port(53), Verdict: v(14, Allow)},
		{Peer: AnyPeer, Proto: ProtoTCP, Ports: Port(80), Verdict: v(15, Allow), FQDN: 1},
		{Peer: peerA, Proto: ProtoTCP, Ports: AllPorts, Verdict: v(16, Allow)},
	}
	def := v(1, Drop)
	var ds dispatches
	boxes := resolveWith(list, ds.register(false))
	if len(ds.list) == 0 {
		t.Fatal("no dispatch registered")
	}
	n := 0
	for _, peer := range []Identity{World, peerA, peerB, 7} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoICMP, 47} {
			for _, port := range []uint16{0, 53, 79, 80, 81, 85, 90, 91, 100, 101, 65535} {
				for _, in := range []map[int]bool{{}, {1: true}, {2: true}, {1: true, 2: true}} {
					want := walkFQDN(list, def, peer, proto, port, in)
					got := kernelWalk(boxes, &ds, def, peer, proto, port, in)
					if got != want {
						t.Errorf("peer %d proto %d port %d sets %v: kernel %+v, want %+v", peer, proto, port, in, got, want)
					}
					n++
				}
			}
		}
	}
	t.Logf("%d cases, %d boxes, %d dispatches", n, len(boxes), len(ds.list))
}

// TestResolveFQDNRandom: random lists mixing plain, L7-free FQDN and
// any-protocol entries over few peers and ports, every point checked
// against the first-match walk for every combination of set memberships.
func TestResolveFQDNRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	peers := []Identity{1, 2, AnyPeer}
	protos := []uint8{ProtoTCP, ProtoUDP, ProtoAny, 47}
	cases := 0
	for round := range 300 {
		var list []Entry
		for i := range 1 + rng.Intn(10) {
			e := Entry{Peer: peers[rng.Intn(len(peers))], Proto: protos[rng.Intn(len(protos))], Ports: AllPorts,
				Verdict: Verdict{Rule: uint32(10 + i), Action: Action(1 + rng.Intn(3))}}
			if hasPorts(e.Proto) && rng.Intn(3) > 0 {
				lo := uint16(rng.Intn(6))
				e.Ports = Ports(lo, lo+uint16(rng.Intn(4)))
			}
			if rng.Intn(2) == 0 {
				e.FQDN = 1 + rng.Intn(3)
			}
			list = append(list, e)
		}
		var ds dispatches
		boxes := resolveWith(list, ds.register(false))
		def := Verdict{Rule: 1, Action: Drop}
		for _, peer := range []Identity{World, 1, 2} {
			for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoICMP, 47} {
				for port := range uint16(11) {
					for bits := range 8 {
						in := map[int]bool{1: bits&1 != 0, 2: bits&2 != 0, 3: bits&4 != 0}
						want := walkFQDN(list, def, peer, proto, port, in)
						got := kernelWalk(boxes, &ds, def, peer, proto, port, in)
						cases++
						if got != want {
							t.Fatalf("round %d: peer %d proto %d port %d sets %v: kernel %+v, want %+v\nlist %+v", round, peer, proto, port, in, got, want, list)
						}
					}
				}
			}
		}
	}
	t.Logf("%d cases", cases)
}

func TestValidateFQDN(t *testing.T) {
	v := Verdict{Rule: 1, Action: Allow}
	base := func() *HostState {
		return &HostState{EgressDefault: v, IngressDefault: v, FQDNSets: []FQDNSet{{Patterns: []string{"*.example.test"}}},
			Workloads: []Workload{{Name: "w", Interface: "bhw1", Egress: []Entry{{Peer: AnyPeer, Proto: ProtoTCP, Ports: Port(80), Verdict: v, FQDN: 1}}}}}
	}
	if err := base().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*HostState){
		"set out of range": func(s *HostState) { s.Workloads[0].Egress[0].FQDN = 2 },
		"ingress":          func(s *HostState) { s.Workloads[0].Ingress = s.Workloads[0].Egress },
		"empty set":        func(s *HostState) { s.FQDNSets[0].Patterns = nil },
		"bad pattern":      func(s *HostState) { s.FQDNSets[0].Patterns = []string{"a b"} },
		"with profile": func(s *HostState) {
			s.Profiles = []Profile{{Apps: []AppMatch{{Name: "APP_HTTP"}}}}
			s.Workloads[0].Egress[0].Profile = 1
		},
	} {
		if err := func() error { s := base(); mod(s); return s.Validate() }(); err == nil {
			t.Errorf("%s: valid, want an error", name)
		}
	}
}

// TestFQDNKernel: w1 may reach tcp/portA of addresses in FQDN set 1 only,
// except w3, which an earlier rule drops even when it is in the set; the
// set's elements time out by themselves.
func TestFQDNKernel(t *testing.T) {
	l := newLab(t, 1, 3, Config{})
	w1, w2, w3 := l.w(1, 1), l.w(1, 2), l.w(1, 3)
	allow := Verdict{Rule: 1, Action: Allow}
	st := &HostState{
		Revision: 1, Identities: l.identities(), EgressDefault: allow, IngressDefault: allow,
		FQDNSets: []FQDNSet{{Patterns: []string{"*.example.test"}}, {Patterns: []string{"*.example.test"}, Family: 4}},
		Workloads: []Workload{{Name: "w1", Interface: w1.Interface, Egress: []Entry{
			{Peer: l.ident[w3], Proto: ProtoTCP, Ports: AllPorts, Verdict: Verdict{Rule: 20, Action: Drop}},
			{Peer: AnyPeer, Proto: ProtoTCP, Ports: Port(portA), Verdict: Verdict{Rule: 21, Action: Allow}, FQDN: 1},
			{Peer: AnyPeer, Proto: ProtoTCP, Ports: Port(portC), Verdict: Verdict{Rule: 23, Action: Allow}, FQDN: 2},
			{Peer: AnyPeer, Proto: ProtoAny, Ports: AllPorts, Verdict: Verdict{Rule: 22, Action: Drop}},
		}}, {Name: "w2", Interface: w2.Interface}, {Name: "w3", Interface: w3.Interface}},
	}
	desc, err := Describe(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fqdn set 1 (fqdn1_v4, fqdn1_v6): *.example.test", "FQDN dispatch 1: in fqdn set 1: allow rule 21 at egress; else drop rule 22 at egress"} {
		if !strings.Contains(desc, want) {
			t.Errorf("Describe lacks %q:\n%s", want, desc)
		}
	}
	tb := l.tables["h1"]
	if _, err := tb.Apply(st); err != nil {
		t.Fatal(err)
	}
	h := l.hosts[0]
	add := func(set int, a netip.Addr, timeout time.Duration) {
		t.Helper()
		c, err := nftables.New(nftables.WithNetNSFd(h.NS.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		tbl := &nftables.Table{Name: DefaultTable, Family: nftables.TableFamilyINet}
		s := &nftables.Set{Table: tbl, Name: FQDNSetName(set, a.Is6()), KeyType: nftables.TypeIPAddr, HasTimeout: true}
		if a.Is6() {
			s.KeyType = nftables.TypeIP6Addr
		}
		if err := c.SetAddElements(s, []nftables.SetElement{{Key: a.AsSlice(), Timeout: timeout}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("add %v to the fqdn set: %v", a, err)
		}
	}
	check := func(what string, dst *netlab.Workload, v6 bool, port uint16, want netlab.Outcome) {
		t.Helper()
		got, err := w1.ProbeTCP(netip.AddrPortFrom(dst.Addr(v6), port), dropTimeout)
		if got == netlab.Timeout && want != netlab.Timeout {
			got, err = w1.ProbeTCP(netip.AddrPortFrom(dst.Addr(v6), port), slowTimeout)
		}
		if err != nil || got != want {
			t.Errorf("%s: w1 -> %s v6=%v port %d: %v (%v), want %v", what, dst.Name, v6, port, got, err, want)
		}
	}
	for _, v6 := range []bool{false, true} {
		check("not in the set", w2, v6, portA, netlab.Timeout)
	}
	for _, v6 := range []bool{false, true} {
		add(1, w2.Addr(v6), 2*time.Second)
		add(1, w3.Addr(v6), 2*time.Second)
		add(2, w2.Addr(v6), 2*time.Second)
	}
	for _, v6 := range []bool{false, true} {
		check("in the set", w2, v6, portA, netlab.Open)
		check("in the set, other port", w2, v6, portB, netlab.Timeout)
		check("in the set, earlier drop", w3, v6, portA, netlab.Timeout)
	}
	check("in an IPv4-only set", w2, false, portC, netlab.Open)
	check("in an IPv4-only set, IPv6", w2, true, portC, netlab.Timeout)
	// An incremental apply of the same shape keeps the sets' elements.
	st.Revision = 2
	s, err := tb.Apply(st)
	if err != nil || s.Mode != ModeIncremental {
		t.Fatalf("re-apply: %+v %v, want incremental", s.Mode, err)
	}
	check("after an incremental apply", w2, false, portA, netlab.Open)
	if status, err := tb.Verify(true); err != nil || len(status.Drift) > 0 {
		t.Errorf("verify: %v %v", status.Drift, err)
	}
	time.Sleep(2200 * time.Millisecond)
	for _, v6 := range []bool{false, true} {
		check("after the timeout", w2, v6, portA, netlab.Timeout)
	}
}
