package span

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// TestFQDN: destination groups with names and FQDN-only profiles become
// FQDN entries after the rule's plain entries, in rule order, with the
// host's FQDN sets numbered by first use; a source holding one family of
// the workload limits the set; nothing of it reaches ingress.
func TestFQDN(t *testing.T) {
	s := newSet(
		wl("w1", "h1", "10.0.0.1", "fd00::1"),
		group("names", policy.GroupSpec{FQDNs: []string{"*.example.test", "www.example.test"}}),
		group("outer", policy.GroupSpec{Groups: []string{"names"}}),
		group("v4", policy.GroupSpec{IPs: []string{"10.0.0.0/24"}}),
		&policy.ContextProfile{Header: header(policy.KindContextProfile, "api"), Spec: policy.ContextProfileSpec{FQDNs: []string{"api.example.org"}}},
		section("s", policy.CategoryApplication, nil,
			policy.Rule{Name: "block", Destinations: []string{"192.0.2.1"}, Services: []string{"tcp/80"}, Action: policy.ActionDrop},
			policy.Rule{Name: "web", Destinations: []string{"outer"}, Services: []string{"tcp/80"}, Action: policy.ActionAllow},
			policy.Rule{Name: "api", Services: []string{"tcp/443"}, Profiles: []string{"api"}, Action: policy.ActionAllow, Direction: policy.DirectionOut},
			policy.Rule{Name: "v4only", Sources: []string{"v4"}, Destinations: []string{"names"}, Services: []string{"tcp/8080"}, Action: policy.ActionAllow, Direction: policy.DirectionOut},
		),
		&policy.DefaultRule{Header: header(policy.KindDefaultRule, policy.DefaultRuleName), Spec: policy.DefaultRuleSpec{Action: policy.ActionDrop}},
	)
	e := compileSet(t, s)
	c, err := NewCompiler(e, s)
	if err != nil {
		t.Fatal(err)
	}
	st, stats, err := c.Host("h1", 1)
	if err != nil {
		t.Fatal(err)
	}
	wantSets := []nft.FQDNSet{
		{Patterns: []string{"*.example.test", "www.example.test"}},
		{Patterns: []string{"api.example.org"}},
		{Patterns: []string{"*.example.test", "www.example.test"}, Family: 4},
	}
	if !reflect.DeepEqual(st.FQDNSets, wantSets) {
		t.Errorf("FQDN sets %+v, want %+v", st.FQDNSets, wantSets)
	}
	id := func(key string) uint32 {
		for _, r := range e.Rules() {
			if r.Key == key {
				return r.ID
			}
		}
		t.Fatalf("no rule %s", key)
		return 0
	}
	tcp := func(p uint16) (uint8, nft.PortRange) { return nft.ProtoTCP, nft.Port(p) }
	var got []string
	for _, en := range st.Workloads[0].Egress {
		if en.Peer == nft.AnyPeer || en.FQDN != 0 {
			got = append(got, fmtEntry(en))
		}
	}
	p80, r80 := tcp(80)
	p443, r443 := tcp(443)
	p8080, r8080 := tcp(8080)
	want := []string{
		fmtEntry(nft.Entry{Peer: nft.AnyPeer, Proto: p80, Ports: r80, Verdict: nft.Verdict{Rule: id("s/web"), Action: nft.Allow}, FQDN: 1}),
		fmtEntry(nft.Entry{Peer: nft.AnyPeer, Proto: p443, Ports: r443, Verdict: nft.Verdict{Rule: id("s/api"), Action: nft.Allow}, FQDN: 2}),
		fmtEntry(nft.Entry{Peer: nft.AnyPeer, Proto: p8080, Ports: r8080, Verdict: nft.Verdict{Rule: id("s/v4only"), Action: nft.Allow}, FQDN: 3}),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("egress FQDN entries:\n got %v\nwant %v", got, want)
	}
	if first := st.Workloads[0].Egress[0]; first.FQDN != 0 || first.Verdict.Rule != id("s/block") {
		t.Errorf("first egress entry %+v: want the plain drop of s/block", first)
	}
	for _, en := range st.Workloads[0].Ingress {
		if en.FQDN != 0 {
			t.Errorf("ingress entry with an FQDN set: %+v", en)
		}
	}
	if stats.FQDN != 3 {
		t.Errorf("stats: %d FQDN rules, want 3", stats.FQDN)
	}
	if !st.HasFQDN() {
		t.Error("HasFQDN false")
	}
}

func fmtEntry(e nft.Entry) string { return fmt.Sprintf("%+v", e) }
