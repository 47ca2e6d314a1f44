package span

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/directory"
	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// rdshSet: an HR application on host h2 that only the directory group hr
// (and the user carol by name) may reach, an RDSH host rdsh1 on h1 whose
// users share one address, and a rule for the RDSH host's address itself.
func rdshSet() *policy.Set {
	return newSet(
		wl("hrapp", "h2", "10.0.2.10"),
		wl("rdsh1", "h1", "10.0.1.10"),
		group("hr-users", policy.GroupSpec{DirectoryGroups: []string{"hr"}, Users: []string{"Carol"}}),
		group("hr-app", policy.GroupSpec{IPs: []string{"10.0.2.10"}}),
		group("rdsh", policy.GroupSpec{IPs: []string{"10.0.1.10"}}),
		section("hr", policy.CategoryApplication, []string{"hr-app"},
			policy.Rule{Name: "hr-web", Sources: []string{"hr-users"}, Destinations: []string{"hr-app"}, Services: []string{"tcp/443"}, Action: policy.ActionAllow, Direction: policy.DirectionIn},
			policy.Rule{Name: "rdsh-ssh", Sources: []string{"rdsh"}, Destinations: []string{"hr-app"}, Services: []string{"tcp/22"}, Action: policy.ActionAllow, Direction: policy.DirectionIn},
		),
		&policy.DefaultRule{Header: header(policy.KindDefaultRule, policy.DefaultRuleName), Spec: policy.DefaultRuleSpec{Action: policy.ActionDrop}},
	)
}

func rdshDirectory() *directory.Directory {
	return directory.New(
		[]directory.User{{Name: "alice"}, {Name: "bob"}, {Name: "carol"}, {Name: "dave"}},
		[]directory.Group{{Name: "hr", Groups: []string{"hr-leads"}}, {Name: "hr-leads", Users: []string{"alice"}}},
	)
}

var rdshSessions = []Session{
	{User: "ALICE", Addr: netip.MustParseAddr("10.0.1.10"), Ports: nft.Ports(10000, 10999)},
	{User: "bob", Addr: netip.MustParseAddr("10.0.1.10"), Ports: nft.Ports(11000, 11999)},
	{User: "carol", Addr: netip.MustParseAddr("10.0.1.10"), Ports: nft.Ports(12000, 12999)},
	// dave overlaps carol: the kernel keys a port once, the first keeps it.
	{User: "dave", Addr: netip.MustParseAddr("10.0.1.10"), Ports: nft.Ports(12500, 13999)},
}

// kernelVerdict decides a new connection at wl's ingress as the kernel
// does: the source's identity from its address, overridden by a session
// range for TCP and UDP, then the first matching entry.
func kernelVerdict(st *nft.HostState, wl string, src netip.Addr, sport uint16, proto uint8, port uint16) nft.Verdict {
	id := nft.World
	for _, r := range st.Identities {
		if r.Lo.Compare(src) <= 0 && src.Compare(r.Hi) <= 0 {
			id = r.Identity
		}
	}
	if proto == nft.ProtoTCP || proto == nft.ProtoUDP {
		for _, s := range st.Sessions {
			if s.Addr == src && s.Ports.Lo <= sport && sport <= s.Ports.Hi {
				id = s.Identity
			}
		}
	}
	for _, w := range st.Workloads {
		if w.Name != wl {
			continue
		}
		for _, e := range w.Ingress {
			if (e.Peer == id || e.Peer == nft.AnyPeer) && (e.Proto == nft.ProtoAny || e.Proto == proto) && e.Ports.Lo <= port && port <= e.Ports.Hi {
				return e.Verdict
			}
		}
	}
	return st.IngressDefault
}

// TestSessionsKeyUserRules: at the HR application's host, alice's session
// ports (hr through a nested directory group, name case ignored) and
// carol's (named in users) are peers that reach tcp/443, bob's and dave's
// are not, and every peer decides as the evaluator decides the flow with
// the user its source port names.
func TestSessionsKeyUserRules(t *testing.T) {
	s := rdshSet()
	if err := s.Validate(nil).Err(); err != nil {
		t.Fatal(err)
	}
	e, err := eval.Compile(s, eval.WithDirectory(rdshDirectory()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCompiler(e, s, WithSessions(rdshSessions))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := c.Host("h2", 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sessions) != 2 {
		t.Fatalf("sessions %+v: want alice's and carol's only", st.Sessions)
	}
	if st.Sessions[0].Ports != nft.Ports(10000, 10999) || st.Sessions[1].Ports != nft.Ports(12000, 12999) {
		t.Errorf("sessions %+v: want alice's 10000-10999 and carol's 12000-12999", st.Sessions)
	}
	b, err := Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Sessions, st.Sessions) {
		t.Errorf("wire round trip: sessions %+v, want %+v", back.Sessions, st.Sessions)
	}

	rdsh, hr := netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.2.10")
	// The manager names a flow's user the same way: the session holding
	// its source port (dave's overlap is carol's, the earlier start).
	var known []directory.Session
	for i, x := range rdshSessions {
		known = append(known, directory.Session{User: x.User, IP: x.Addr, Ports: directory.PortRange{Lo: x.Ports.Lo, Hi: x.Ports.Hi},
			Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Duration(i) * time.Hour)})
	}
	table := directory.NewTable(known)
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	allowed := map[uint16]bool{}
	for _, sport := range []uint16{9999, 10000, 10500, 10999, 11000, 11500, 12000, 12999, 13500, 40000} {
		for _, port := range []uint16{22, 443, 8080} {
			f := flow(rdsh.String(), hr.String(), nft.ProtoTCP, port)
			if x, ok := table.Who(rdsh, sport, now); ok {
				f.User = x.User
			}
			// The HR host's point: rdsh1's egress (default drop) is
			// another host's business.
			var in eval.Point
			for _, p := range e.Evaluate(f).Points {
				if p.Direction == policy.DirectionIn {
					in = p
				}
			}
			got := kernelVerdict(st, "hrapp", rdsh, sport, nft.ProtoTCP, port)
			want := verdictOf(e, in.Action, in.RuleID)
			if got != want {
				t.Errorf("from %v:%d (user %q) to tcp/%d: kernel %+v, evaluator %+v (%s)", rdsh, sport, f.User, port, got, want, in.Rule)
			}
			if port == 443 && got.Action == nft.Allow {
				allowed[sport] = true
			}
		}
	}
	want := map[uint16]bool{10000: true, 10500: true, 10999: true, 12000: true, 12999: true}
	if !reflect.DeepEqual(allowed, want) {
		t.Errorf("source ports reaching tcp/443: %v, want %v", allowed, want)
	}

	// Without sessions the state is the one of a compiler without them.
	plain, err := NewCompiler(e, s)
	if err != nil {
		t.Fatal(err)
	}
	none, err := NewCompiler(e, s, WithSessions(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, _, _ := plain.Host("h2", 7)
	z, _, _ := none.Host("h2", 7)
	ab, _ := Encode(a)
	zb, _ := Encode(z)
	if string(ab) != string(zb) {
		t.Errorf("no sessions changed the bytes:\n%s\n%s", ab, zb)
	}
	// The RDSH host's own egress ignores sessions: a user is a source.
	h1, _, err := c.Host("h1", 7)
	if err != nil {
		t.Fatal(err)
	}
	h1plain, _, _ := plain.Host("h1", 7)
	if !reflect.DeepEqual(h1, h1plain) {
		t.Errorf("h1's state changed with sessions:\n%+v\n%+v", h1, h1plain)
	}
}

// TestL7FailOpen: a host's queue fails open only when every section with
// L7 entries in its span says l7FailMode: open.
func TestL7FailOpen(t *testing.T) {
	build := func(modes ...policy.FailMode) *nft.HostState {
		objs := []policy.Object{
			wl("web", "h1", "10.0.0.1"),
			&policy.ContextProfile{Header: header(policy.KindContextProfile, "https"), Spec: policy.ContextProfileSpec{Apps: []policy.AppMatch{{Name: "APP_HTTPS"}}}},
			&policy.DefaultRule{Header: header(policy.KindDefaultRule, policy.DefaultRuleName), Spec: policy.DefaultRuleSpec{Action: policy.ActionDrop}},
		}
		for i, m := range modes {
			p := section(string(rune('a'+i)), policy.CategoryApplication, nil,
				policy.Rule{Name: "r", Services: []string{"tcp/" + string(rune('1'+i)) + "443"}, Profiles: []string{"https"}, Action: policy.ActionAllow})
			p.Spec.L7FailMode = m
			objs = append(objs, p)
		}
		objs = append(objs, section("plain", policy.CategoryApplication, nil,
			policy.Rule{Name: "ssh", Services: []string{"tcp/22"}, Action: policy.ActionAllow}))
		s := newSet(objs...)
		st, err := ForHost(compileSet(t, s), s, "h1", 1)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, tc := range []struct {
		modes []policy.FailMode
		want  bool
	}{
		{nil, false},
		{[]policy.FailMode{policy.FailOpen}, true},
		{[]policy.FailMode{""}, false},
		{[]policy.FailMode{policy.FailOpen, policy.FailOpen}, true},
		{[]policy.FailMode{policy.FailOpen, policy.FailClosed}, false},
		{[]policy.FailMode{policy.FailOpen, ""}, false},
	} {
		if got := build(tc.modes...).L7FailOpen; got != tc.want {
			t.Errorf("sections %q: L7FailOpen %v, want %v", tc.modes, got, tc.want)
		}
	}
}

// TestSessionsProperty: random user, address and mixed source groups,
// random port-range sessions at two RDSH addresses: at the destination's
// ingress, the kernel model (address identity, overridden by the session
// of the source port) decides every flow as the evaluator decides it with
// the user that port names.
func TestSessionsProperty(t *testing.T) {
	dir := directory.New(
		[]directory.User{{Name: "alice"}, {Name: "bob"}, {Name: "carol"}, {Name: "dave"}},
		[]directory.Group{{Name: "hr", Users: []string{"alice", "carol"}}},
	)
	groups := []string{"g-alice", "g-hr", "g-rdsh", "g-mixed"}
	users := []string{"alice", "Bob", "carol", "dave"}
	addrs := []netip.Addr{netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.3.10"), netip.MustParseAddr("10.0.9.9")}
	svcs := [][]string{{"tcp/443"}, {"tcp/22"}, {"tcp/400-500"}, nil, {"udp/443"}}
	actions := []policy.Action{policy.ActionAllow, policy.ActionDrop, policy.ActionReject}
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := range 150 {
		var rules []policy.Rule
		for i := range 1 + rng.IntN(6) {
			r := policy.Rule{Name: fmt.Sprintf("r%d", i), Services: pick(rng, svcs), Action: pick(rng, actions), Direction: policy.DirectionIn}
			for range rng.IntN(3) {
				r.Sources = append(r.Sources, pick(rng, groups))
			}
			slices.Sort(r.Sources)
			r.Sources = slices.Compact(r.Sources)
			rules = append(rules, r)
		}
		s := newSet(
			wl("hrapp", "h2", "10.0.2.10"),
			wl("rdsh1", "h1", "10.0.1.10"),
			group("g-alice", policy.GroupSpec{Users: []string{"alice"}}),
			group("g-hr", policy.GroupSpec{DirectoryGroups: []string{"hr"}}),
			group("g-rdsh", policy.GroupSpec{IPs: []string{"10.0.1.0/24"}}),
			group("g-mixed", policy.GroupSpec{Users: []string{"bob"}, IPs: []string{"10.0.3.10"}}),
			group("hr-app", policy.GroupSpec{IPs: []string{"10.0.2.10"}}),
			section("s", policy.CategoryApplication, []string{"hr-app"}, rules...),
			&policy.DefaultRule{Header: header(policy.KindDefaultRule, policy.DefaultRuleName), Spec: policy.DefaultRuleSpec{Action: pick(rng, actions)}},
		)
		if err := s.Validate(nil).Err(); err != nil {
			t.Fatal(err)
		}
		e, err := eval.Compile(s, eval.WithDirectory(dir))
		if err != nil {
			t.Fatal(err)
		}
		var sessions []Session
		var known []directory.Session
		for k := range 6 {
			if rng.IntN(3) == 0 {
				continue
			}
			x := Session{User: pick(rng, users), Addr: addrs[rng.IntN(2)], Ports: nft.Ports(uint16(20000+1000*k), uint16(20000+1000*k+rng.IntN(1000)))}
			sessions = append(sessions, x)
			known = append(known, directory.Session{User: x.User, IP: x.Addr, Ports: directory.PortRange{Lo: x.Ports.Lo, Hi: x.Ports.Hi}})
		}
		c, err := NewCompiler(e, s, WithSessions(sessions))
		if err != nil {
			t.Fatal(err)
		}
		st, _, err := c.Host("h2", 1)
		if err != nil {
			t.Fatal(err)
		}
		table := directory.NewTable(known)
		now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
		for range 200 {
			src := pick(rng, addrs)
			sport := uint16(19000 + rng.IntN(8000))
			proto := pick(rng, []uint8{nft.ProtoTCP, nft.ProtoUDP})
			port := pick(rng, []uint16{22, 443, 450, 8080})
			f := flow(src.String(), "10.0.2.10", proto, port)
			if x, ok := table.Who(src, sport, now); ok {
				f.User = x.User
			}
			var in eval.Point
			for _, p := range e.Evaluate(f).Points {
				if p.Direction == policy.DirectionIn {
					in = p
				}
			}
			got := kernelVerdict(st, "hrapp", src, sport, proto, port)
			if want := verdictOf(e, in.Action, in.RuleID); got != want {
				t.Fatalf("iteration %d: %v:%d (user %q) to %d/%d: kernel %+v, evaluator %+v (%s)\nrules %+v\nsessions %+v\nstate %+v",
					iter, src, sport, f.User, proto, port, got, want, in.Rule, rules, sessions, st)
			}
		}
	}
}
