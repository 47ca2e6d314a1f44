package span

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func compileSet(t *testing.T, s *policy.Set) *eval.Evaluator {
	t.Helper()
	if err := s.Validate(nil).Err(); err != nil {
		t.Fatal(err)
	}
	e, err := eval.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func group(name string, spec policy.GroupSpec) *policy.Group {
	return &policy.Group{Header: header(policy.KindGroup, name), Spec: spec}
}

func section(name string, cat policy.Category, appliedTo []string, rules ...policy.Rule) *policy.Policy {
	return &policy.Policy{Header: header(policy.KindPolicy, name), Spec: policy.PolicySpec{Category: cat, AppliedTo: appliedTo, Rules: rules}}
}

func newSet(objs ...policy.Object) *policy.Set {
	s := policy.NewSet()
	for _, o := range objs {
		s.Put(o)
	}
	next := uint32(100)
	s.AssignRuleIDs(func() uint32 { next++; return next })
	return s
}

func flow(src, dst string, proto uint8, port uint16) eval.Flow {
	return eval.Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, Port: port, ICMPType: -1, ICMPCode: -1}
}

// TestInexact: a rule that tells two IPv4 addresses of one workload apart
// cannot be enforced at the workload's interface, and Host says so; a
// staged rule or a rule applied elsewhere is no problem.
func TestInexact(t *testing.T) {
	one := group("one", policy.GroupSpec{IPs: []string{"10.0.0.1"}})
	mk := func(r policy.Rule) *policy.Set {
		return newSet(wl("w", "h1", "10.0.0.1", "10.0.0.2"), wl("x", "h2", "10.0.1.1"), one,
			section("p", policy.CategoryApplication, nil, r))
	}
	drop := policy.Rule{Name: "r", Sources: []string{"one"}, Action: policy.ActionDrop, Direction: policy.DirectionOut}

	s := mk(drop)
	_, err := ForHost(compileSet(t, s), s, "h1", 1)
	var ie *InexactError
	if !errors.As(err, &ie) {
		t.Fatalf("got %v, want an InexactError", err)
	}
	if want := "workload w: egress rule p/r (id 101): holds 1 of its 2 IPv4 addresses"; len(ie.Problems) != 1 || ie.Problems[0] != want {
		t.Errorf("problems %q, want [%q]", ie.Problems, want)
	}
	if _, err := ForHost(compileSet(t, s), s, "h2", 1); err != nil {
		t.Errorf("host h2: %v", err)
	}

	staged := drop
	staged.Mode = policy.ModeStaged
	in := drop
	in.Direction = policy.DirectionIn // the local side at ingress is the destination: any
	for _, r := range []policy.Rule{staged, in} {
		s := mk(r)
		if _, err := ForHost(compileSet(t, s), s, "h1", 1); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

// TestOneFamily: a dual-stack workload whose IPv4 address alone is in a
// rule's sources gets the rule for IPv4 peers only, explicit or any.
func TestOneFamily(t *testing.T) {
	s := newSet(
		wl("w", "h1", "10.0.0.1", "fd00::1"), wl("x", "h2", "10.0.1.1", "fd00::2"),
		group("v4", policy.GroupSpec{IPs: []string{"10.0.0.0/8"}}),
		group("peers", policy.GroupSpec{IPs: []string{"10.0.1.0/24", "fd00::/64"}}),
		section("p", policy.CategoryApplication, nil,
			policy.Rule{Name: "to-peers", Sources: []string{"v4"}, Destinations: []string{"peers"}, Services: []string{"tcp/22"}, Action: policy.ActionReject},
			policy.Rule{Name: "to-any", Sources: []string{"v4"}, Services: []string{"tcp/80"}, Action: policy.ActionDrop},
		),
	)
	e := compileSet(t, s)
	dp, stats, err := newDataPlane(t, e, s)
	if err != nil {
		t.Fatal(err)
	}
	// Egress: both rules hold w's IPv4 address only; ingress: to-peers
	// holds its IPv6 address only.
	if stats[0].OneFamily != 3 {
		t.Errorf("OneFamily = %d, want 3", stats[0].OneFamily)
	}
	for _, f := range []eval.Flow{
		flow("10.0.0.1", "10.0.1.1", nft.ProtoTCP, 22),
		flow("fd00::1", "fd00::2", nft.ProtoTCP, 22),
		flow("10.0.0.1", "192.0.2.1", nft.ProtoTCP, 80),
		flow("fd00::1", "2001:db8::1", nft.ProtoTCP, 80),
		flow("fd00::1", "fd00::2", nft.ProtoTCP, 80),
		flow("fd00::2", "fd00::1", nft.ProtoTCP, 22),
		flow("10.0.1.1", "10.0.0.1", nft.ProtoTCP, 22),
	} {
		if _, diff := compare(t, e, dp, f); diff != "" {
			t.Errorf("%v -> %v: %s\n%s", f.Src, f.Dst, diff, dumpStates(dp))
		}
	}
}

// TestSpan: a host gets the rules applied to its own workloads, the
// identities they name and nothing else.
func TestSpan(t *testing.T) {
	s := newSet(
		wl("web", "h1", "10.0.0.1"), wl("db", "h2", "10.0.1.1"), wl("batch", "h3", "10.0.2.1"),
		// No interface: inventory only, enforced nowhere.
		&policy.Workload{Header: header(policy.KindWorkload, "legacy"), Spec: policy.WorkloadSpec{IPs: []string{"10.0.3.1"}, Host: "h1"}},
		group("web", policy.GroupSpec{IPs: []string{"10.0.0.1"}}),
		group("db", policy.GroupSpec{IPs: []string{"10.0.1.1"}}),
		group("batch", policy.GroupSpec{IPs: []string{"10.0.2.1"}}),
		group("partners", policy.GroupSpec{IPs: []string{"192.0.2.0/24"}}),
		section("db", policy.CategoryApplication, []string{"db"},
			policy.Rule{Name: "from-web", Sources: []string{"web"}, Services: []string{"tcp/5432"}, Action: policy.ActionAllow},
			policy.Rule{Name: "from-partners", Sources: []string{"partners"}, Services: []string{"tcp/5432"}, Action: policy.ActionAllow},
		),
		section("batch", policy.CategoryApplication, []string{"batch"},
			policy.Rule{Name: "out", Destinations: []string{"db"}, Action: policy.ActionAllow},
		),
	)
	s.Default.Spec.Action = policy.ActionDrop
	e := compileSet(t, s)
	c, err := NewCompiler(e, s)
	if err != nil {
		t.Fatal(err)
	}
	if got := Hosts(s); !reflect.DeepEqual(got, []string{"h1", "h2", "h3"}) {
		t.Errorf("Hosts = %v", got)
	}
	tests := []struct {
		host                      string
		workloads, rules, entries int
		identities, ranges        int
	}{
		// web's own state: nothing applies to it but the default.
		{"h1", 1, 0, 0, 0, 0},
		// db: two rules, each from one identity (web, partners).
		{"h2", 1, 2, 2, 2, 2},
		// batch: one rule to db's identity.
		{"h3", 1, 1, 1, 1, 1},
	}
	for _, tt := range tests {
		st, stats, err := c.Host(tt.host, 3)
		if err != nil {
			t.Fatal(err)
		}
		want := Stats{Workloads: tt.workloads, Rules: tt.rules, Entries: tt.entries, Identities: tt.identities, Ranges: tt.ranges}
		if stats != want {
			t.Errorf("host %s: %+v, want %+v", tt.host, stats, want)
		}
		if len(st.Workloads) != tt.workloads {
			t.Errorf("host %s: workloads %+v", tt.host, st.Workloads)
		}
		if st.Revision != 3 || st.EgressDefault != (nft.Verdict{Rule: 1, Action: nft.Drop}) || st.IngressDefault != st.EgressDefault {
			t.Errorf("host %s: revision %d, defaults %v %v", tt.host, st.Revision, st.EgressDefault, st.IngressDefault)
		}
	}
	if _, _, err := c.Host("h1", -1); err == nil {
		t.Error("negative revision accepted")
	}
}

// TestServices: every kind of port spec becomes the kernel's range.
func TestServices(t *testing.T) {
	s := newSet(
		wl("w", "h1", "10.0.0.1"),
		&policy.Service{Header: header(policy.KindService, "web"), Spec: policy.ServiceSpec{Ports: []string{"tcp/80", "tcp/443"}}},
		section("p", policy.CategoryApplication, nil,
			policy.Rule{Name: "specs", Direction: policy.DirectionIn, Action: policy.ActionAllow, Services: []string{
				"web", "tcp/8000-8100", "udp", "sctp/9", "icmp", "icmp/8", "icmp/3/4", "icmpv6/128", "proto/47", "tcp/80"}},
			policy.Rule{Name: "any", Direction: policy.DirectionIn, Action: policy.ActionReject},
		),
	)
	st, err := ForHost(compileSet(t, s), s, "h1", 1)
	if err != nil {
		t.Fatal(err)
	}
	allow := nft.Verdict{Rule: 101, Action: nft.Allow}
	want := []nft.Entry{
		{Peer: nft.AnyPeer, Proto: nft.ProtoTCP, Ports: nft.Port(80), Verdict: allow},
		{Peer: nft.AnyPeer, Proto: nft.ProtoTCP, Ports: nft.Port(443), Verdict: allow},
		{Peer: nft.AnyPeer, Proto: nft.ProtoTCP, Ports: nft.Ports(8000, 8100), Verdict: allow},
		{Peer: nft.AnyPeer, Proto: nft.ProtoUDP, Ports: nft.AllPorts, Verdict: allow},
		{Peer: nft.AnyPeer, Proto: nft.ProtoSCTP, Ports: nft.Port(9), Verdict: allow},
		{Peer: nft.AnyPeer, Proto: nft.ProtoICMP, Ports: nft.AllPorts, Verdict: allow},
		// icmp/8 and icmp/3/4 are shadowed by icmp; tcp/80 by itself.
		{Peer: nft.AnyPeer, Proto: nft.ProtoICMPv6, Ports: nft.ICMPType(128), Verdict: allow},
		{Peer: nft.AnyPeer, Proto: 47, Ports: nft.AllPorts, Verdict: allow},
		{Peer: nft.AnyPeer, Proto: nft.ProtoAny, Ports: nft.AllPorts, Verdict: nft.Verdict{Rule: 102, Action: nft.Reject}},
	}
	if got := st.Workloads[0].Ingress; !reflect.DeepEqual(got, want) {
		t.Errorf("ingress:\n got %+v\nwant %+v", got, want)
	}
	if got := st.Workloads[0].Egress; got != nil {
		t.Errorf("egress: %+v, want none", got)
	}
}

// TestStable: the same revision gives the same bytes, however the set was
// built, and a change that does not touch a host leaves its state as it
// was, though the evaluator renumbers its identities.
func TestStable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		s := randomSet(t, rng, singleV4Universe)
		for _, h := range Hosts(s) {
			a, errA := ForHost(compileSet(t, s), s, h, 9)
			b, errB := ForHost(compileSet(t, s.Clone()), s.Clone(), h, 9)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("set %d host %s: %v / %v", i, h, errA, errB)
			}
			if errA != nil {
				continue
			}
			ea, _ := Encode(a)
			eb, _ := Encode(b)
			if !bytes.Equal(ea, eb) {
				t.Fatalf("set %d host %s: two compiles differ:\n%s\n%s", i, h, ea, eb)
			}
		}
	}

	base := []policy.Object{
		wl("web", "h1", "10.0.0.1", "fd00::1"), wl("db", "h2", "10.0.1.1"),
		group("web", policy.GroupSpec{Match: `tier == "web"`}),
		group("db", policy.GroupSpec{IPs: []string{"10.0.1.0/24"}}),
		section("web", policy.CategoryApplication, []string{"web"},
			policy.Rule{Name: "to-db", Destinations: []string{"db"}, Services: []string{"tcp/5432"}, Action: policy.ActionAllow},
			policy.Rule{Name: "rest", Action: policy.ActionDrop, Direction: policy.DirectionOut}),
	}
	base[0].(*policy.Workload).Spec.Tags = map[string]string{"tier": "web"}
	s1 := newSet(base...)
	// Elsewhere: a new group that splits db's range and identities in the
	// evaluator, used only by a section applied to db.
	s2 := s1.Clone()
	s2.Put(group("half", policy.GroupSpec{IPs: []string{"10.0.1.0/25", "10.0.0.0/31"}}))
	s2.Put(section("db", policy.CategoryApplication, []string{"db"},
		policy.Rule{Name: "from-half", Sources: []string{"half"}, Action: policy.ActionAllow}))
	next := uint32(200) // rule ids are stable across revisions
	s2.AssignRuleIDs(func() uint32 { next++; return next })
	e1, e2 := compileSet(t, s1), compileSet(t, s2)
	if e1.IdentityOf(netip.MustParseAddr("10.0.1.1")) == e2.IdentityOf(netip.MustParseAddr("10.0.1.1")) &&
		e1.NumIdentities() == e2.NumIdentities() {
		t.Fatal("the change did not change the evaluator's identities; the test proves nothing")
	}
	a, err := ForHost(e1, s1, "h1", 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ForHost(e2, s2, "h1", 5)
	if err != nil {
		t.Fatal(err)
	}
	ea, _ := Encode(a)
	eb, _ := Encode(b)
	if !bytes.Equal(ea, eb) {
		t.Errorf("host h1 changed with a policy applied to h2 only:\n%s\n%s", ea, eb)
	}
}

// TestGolden compiles testdata/shop.yaml for each of its hosts and
// compares the states, one line per range and entry, with
// testdata/shop.golden (-update rewrites it).
func TestGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policy.Decode("shop.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	s, err := policy.Apply(policy.NewSet(), docs)
	if err != nil {
		t.Fatal(err)
	}
	next := uint32(100)
	s.AssignRuleIDs(func() uint32 { next++; return next })
	e := compileSet(t, s)
	dp, stats, err := newDataPlane(t, e, s)
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for i, h := range Hosts(s) {
		b, err := Encode(dp.states[h])
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&got, "# %s: %d workloads, %d rules, %d entries, %d identities in %d ranges; left out %d staged and %d L7 rules; %d L7 rules; %d bytes encoded\n",
			h, stats[i].Workloads, stats[i].Rules, stats[i].Entries, stats[i].Identities, stats[i].Ranges, stats[i].Staged, stats[i].L7Skipped, stats[i].L7, len(b))
	}
	got.WriteString(dumpStates(dp))
	path := filepath.Join("testdata", "shop.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("states differ from %s (check, then run with -update):\n%s", path, got.String())
	}
}

// TestConcurrentHosts: one Compiler computes hosts in parallel (as the
// control plane does) with the results of computing them one by one.
func TestConcurrentHosts(t *testing.T) {
	s := bigSet(t, 5_000)
	e := compileSet(t, s)
	seq, err := NewCompiler(e, s)
	if err != nil {
		t.Fatal(err)
	}
	par, err := NewCompiler(e, s)
	if err != nil {
		t.Fatal(err)
	}
	hosts := Hosts(s)
	got := make([][]byte, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			st, _, err := par.Host(h, 1)
			if err != nil {
				t.Error(err)
				return
			}
			got[i], _ = Encode(st)
		})
	}
	wg.Wait()
	for i, h := range hosts {
		st, _, err := seq.Host(h, 1)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := Encode(st); !bytes.Equal(got[i], want) {
			t.Errorf("host %s: parallel and sequential states differ", h)
		}
	}
}
