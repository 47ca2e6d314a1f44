package recommend

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current output")

func workload(name, ip string, tags ...string) *policy.Workload {
	t := map[string]string{}
	for i := 0; i+1 < len(tags); i += 2 {
		t[tags[i]] = tags[i+1]
	}
	return &policy.Workload{
		Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name}},
		Spec:   policy.WorkloadSpec{IPs: []string{ip}, Tags: t},
	}
}

// shopInventory is a three-tier shop, a DNS server everyone uses, a CRM
// application calling the shop's API and an untagged jump host.
func shopInventory() []*policy.Workload {
	return []*policy.Workload{
		workload("shop-web-1", "10.0.1.1", "app", "shop", "tier", "web", "env", "prod"),
		workload("shop-web-2", "10.0.1.2", "app", "shop", "tier", "web", "env", "prod"),
		workload("shop-api-1", "10.0.2.1", "app", "shop", "tier", "api", "env", "prod"),
		workload("shop-db-1", "10.0.3.1", "app", "shop", "tier", "db", "env", "prod"),
		workload("dns-1", "10.0.9.53", "app", "infra", "tier", "dns", "env", "prod"),
		workload("crm-app-1", "10.0.5.1", "app", "crm", "tier", "app", "env", "prod"),
		workload("jump-1", "10.0.7.7"),
	}
}

// conn is a connection as it really went, client to server.
type tconn struct {
	proto      uint8
	src, dst   string
	sport      uint16
	dport      uint16
	reversed   bool // recorded with the server as source
	repeatedID bool // also sent as an update before its end
	app        string
}

func shopConns() []tconn {
	var cs []tconn
	add := func(c tconn) { cs = append(cs, c) }
	for i := range 6 {
		add(tconn{proto: 6, src: fmt.Sprintf("203.0.113.%d", 10+i), dst: "10.0.1.1", sport: uint16(40000 + i), dport: 443, repeatedID: i%2 == 0})
	}
	for i, web := range []string{"10.0.1.1", "10.0.1.2"} {
		for j := range 4 {
			// gRPC on a high port: both ends ephemeral-looking.
			add(tconn{proto: 6, src: web, dst: "10.0.2.1", sport: uint16(45000 + 10*i + j), dport: 50051, reversed: j == 3})
			add(tconn{proto: 6, src: web, dst: "10.0.2.1", sport: uint16(46000 + 10*i + j), dport: 8080, reversed: j%2 == 1})
		}
	}
	for j := range 3 {
		add(tconn{proto: 6, src: "10.0.2.1", dst: "10.0.3.1", sport: uint16(50000 + j), dport: 5432})
	}
	for _, p := range []uint16{7000, 7001, 7002, 7004} { // dense: one range
		add(tconn{proto: 6, src: "10.0.2.1", dst: "10.0.3.1", sport: 51000 + p, dport: p})
	}
	for i, c := range []string{"10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.3.1", "10.0.5.1"} {
		add(tconn{proto: 17, src: c, dst: "10.0.9.53", sport: uint16(33000 + i), dport: 53})
	}
	add(tconn{proto: 6, src: "10.0.5.1", dst: "10.0.2.1", sport: 41000, dport: 8443})
	add(tconn{proto: 6, src: "10.0.2.1", dst: "198.51.100.10", sport: 42000, dport: 443})
	add(tconn{proto: 6, src: "10.0.7.7", dst: "10.0.1.1", sport: 43000, dport: 22})
	add(tconn{proto: 6, src: "10.0.7.7", dst: "10.0.2.1", sport: 43001, dport: 22})
	add(tconn{proto: 1, src: "10.0.7.7", dst: "10.0.3.1", sport: 0, dport: 8})
	return cs
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func records(cs []tconn) []flow.Record {
	var out []flow.Record
	for i, c := range cs {
		r := flow.Record{
			ID: fmt.Sprintf("h/%d", i), Kind: flow.KindEnd, Host: "h",
			Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), Proto: c.proto,
			SrcPort: c.sport, DstPort: c.dport, SrcBytes: 100, DstBytes: 1000, SrcPackets: 2, DstPackets: 3,
			Start: t0.Add(time.Duration(i) * time.Minute), End: t0.Add(time.Duration(i)*time.Minute + time.Second),
			Verdict: flow.Allow,
		}
		r.Seen = r.End
		r.App = c.app
		if c.proto == 1 {
			r.SrcPort, r.DstPort, r.ICMPType = 0, 0, uint8(c.dport)
		}
		if c.reversed {
			r.Src, r.Dst, r.SrcPort, r.DstPort = r.Dst, r.Src, r.DstPort, r.SrcPort
		}
		if c.repeatedID {
			u := r
			u.Kind, u.End, u.SrcBytes, u.DstBytes = flow.KindUpdate, time.Time{}, 50, 500
			out = append(out, u)
		}
		out = append(out, r)
	}
	// A drop is not evidence for an allow.
	out = append(out, flow.Record{
		ID: "h/drop", Kind: flow.KindDrop, Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.3.1"),
		Proto: 6, DstPort: 5432, SrcPackets: 1, Seen: t0, Verdict: flow.Drop,
	})
	return out
}

func existingSet() *policy.Set {
	s := policy.NewSet()
	s.Put(&policy.Group{Header: policy.Header{Kind: policy.KindGroup, Metadata: policy.Metadata{Name: "shop-api-tier"}},
		Spec: policy.GroupSpec{Match: `app == "shop" && tier == "api"`}})
	s.Put(&policy.Group{Header: policy.Header{Kind: policy.KindGroup, Metadata: policy.Metadata{Name: "databases"}},
		Spec: policy.GroupSpec{Match: `tier == "db"`}}) // same members as shop/db
	s.Put(&policy.Group{Header: policy.Header{Kind: policy.KindGroup, Metadata: policy.Metadata{Name: "shop-web"}},
		Spec: policy.GroupSpec{Match: `app == "other"`}}) // name taken, members differ
	s.Put(&policy.Service{Header: policy.Header{Kind: policy.KindService, Metadata: policy.Metadata{Name: "https"}},
		Spec: policy.ServiceSpec{Ports: []string{"tcp/443"}}})
	return s
}

func render(t *testing.T, d *Draft) []byte {
	t.Helper()
	y, err := policy.EncodeObjects(d.Objects())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(y)
	fmt.Fprintf(&b, "# reused: %s\n", strings.Join(d.Reused, ", "))
	for _, r := range d.Policy.Spec.Rules {
		ev := d.Evidence[r.Name]
		if ev == nil {
			continue
		}
		fmt.Fprintf(&b, "# evidence %s: flows=%d bytes=%d first=%s last=%s\n", r.Name, ev.Flows, ev.Bytes,
			ev.FirstSeen.Format(time.RFC3339), ev.LastSeen.Format(time.RFC3339))
		for _, x := range ev.Examples {
			fmt.Fprintf(&b, "#   %s\n", x)
		}
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name     string
		existing *policy.Set
	}{
		{"shop", nil},
		{"shop-reuse", existingSet()},
		{"shop-apps", existingSetWithSSH()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conns := shopConns()
			if tc.name == "shop-apps" {
				conns = shopAppConns()
			}
			in := Input{Inventory: shopInventory(), Existing: tc.existing, Flows: records(conns), Scope: `app == "shop"`}
			d, err := Recommend(in, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, d)
			// Input order must not matter.
			rev := slices.Clone(in.Flows)
			slices.Reverse(rev)
			in.Flows = rev
			d2, err := Recommend(in, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if again := render(t, d2); !bytes.Equal(got, again) {
				t.Errorf("output depends on record order:\n%s\nvs\n%s", got, again)
			}
			path := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/recommend -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (run go test ./internal/recommend -update):\n%s", path, got)
			}
		})
	}
}

// compiled returns the evaluator of inventory + existing + draft, with the
// default rule allowing, so that only the draft can drop.
func compiled(t *testing.T, inv []*policy.Workload, existing *policy.Set, d *Draft) *eval.Evaluator {
	t.Helper()
	s := policy.NewSet()
	if existing != nil {
		s = existing.Clone()
	}
	for _, w := range inv {
		s.Put(w.DeepCopy())
	}
	for _, o := range d.Objects() {
		s.Put(o)
	}
	n := uint32(100)
	s.AssignRuleIDs(func() uint32 { n++; return n })
	if err := s.Validate(nil).Err(); err != nil {
		t.Fatalf("draft does not validate: %v", err)
	}
	e, err := eval.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDraftAllowsObservedDropsRest(t *testing.T) {
	for _, existing := range []*policy.Set{nil, existingSet()} {
		inv := shopInventory()
		d, err := Recommend(Input{Inventory: inv, Existing: existing, Flows: records(shopConns()), Scope: `app == "shop"`}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		e := compiled(t, inv, existing, d)
		for _, c := range shopConns() {
			if !touchesShop(c) {
				continue // neither end in scope: the draft says nothing about it
			}
			f := eval.Flow{Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), Proto: c.proto, Port: c.dport, ICMPType: -1, ICMPCode: -1}
			if c.proto == 1 {
				f.Port, f.ICMPType = 0, int16(c.dport)
			}
			if dec := e.Evaluate(f); dec.Verdict != policy.ActionAllow || !byDraft(dec, d.Policy.Metadata.Name) {
				t.Errorf("observed %+v: verdict %s by %s, want allow by a recommended rule", c, dec.Verdict, dec.Rule)
			}
		}
		unseen := []eval.Flow{
			{Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.3.1"), Proto: 6, Port: 5432},     // web -> db
			{Src: netip.MustParseAddr("203.0.113.10"), Dst: netip.MustParseAddr("10.0.2.1"), Proto: 6, Port: 8080}, // outside -> api
			{Src: netip.MustParseAddr("10.0.5.1"), Dst: netip.MustParseAddr("10.0.2.1"), Proto: 6, Port: 8080},     // crm, wrong port
			{Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.2.1"), Proto: 6, Port: 7000},     // web -> api, db's port
		}
		for _, f := range unseen {
			f.ICMPType, f.ICMPCode = -1, -1
			if dec := e.Evaluate(f); dec.Verdict != policy.ActionDrop {
				t.Errorf("unseen %v -> %v:%d: verdict %s by %s, want drop", f.Src, f.Dst, f.Port, dec.Verdict, dec.Rule)
			}
		}
	}
}

func touchesShop(c tconn) bool {
	for _, a := range []string{c.src, c.dst} {
		if strings.HasPrefix(a, "10.0.1.") || strings.HasPrefix(a, "10.0.2.") || strings.HasPrefix(a, "10.0.3.") {
			return true
		}
	}
	return false
}

// byDraft reports whether a rule of the draft's section decided at some
// enforcement point (the other end may be outside the scope, where the
// default rule decides).
func byDraft(d eval.Decision, section string) bool {
	for _, p := range d.Points {
		if strings.HasPrefix(p.Rule, section+"/") {
			return true
		}
	}
	return false
}

func TestReuse(t *testing.T) {
	d, err := Recommend(Input{Inventory: shopInventory(), Existing: existingSet(), Flows: records(shopConns()), Scope: `app == "shop"`}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"databases", "https", "shop-api-tier"}
	if !slices.Equal(d.Reused, want) {
		t.Errorf("reused %v, want %v", d.Reused, want)
	}
	for _, g := range d.Groups {
		if g.Metadata.Name == "shop-web" {
			t.Errorf("draft redefines the existing group shop-web")
		}
	}
}

func TestPortSpecs(t *testing.T) {
	tests := []struct {
		name  string
		opt   Options
		ports []uint16
		want  []string
	}{
		{"single", Options{}, []uint16{443}, []string{"tcp/443"}},
		{"sparse", Options{}, []uint16{22, 80, 443}, []string{"tcp/22", "tcp/80", "tcp/443"}},
		{"dense", Options{}, []uint16{9000, 9001, 9002, 9003, 9004, 9005}, []string{"tcp/9000-9005"}},
		{"gap 2", Options{}, []uint16{7000, 7002, 7004, 7010}, []string{"tcp/7000-7004", "tcp/7010"}},
		{"two too few", Options{}, []uint16{80, 81}, []string{"tcp/80", "tcp/81"}},
		{"wide gap", Options{RangeGap: 10}, []uint16{100, 110, 120, 200}, []string{"tcp/100-120", "tcp/200"}},
		{"min 2", Options{RangeMinPorts: 2}, []uint16{80, 81}, []string{"tcp/80-81"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recommender{opt: tc.opt.Defaults()}
			ps := map[portKey]struct{}{}
			for _, p := range tc.ports {
				ps[portKey{proto: 6, port: p}] = struct{}{}
			}
			if got := r.portSpecs(ps); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBadScope(t *testing.T) {
	if _, err := Recommend(Input{Scope: "app =="}, Options{}); err == nil || !strings.Contains(err.Error(), "scope") {
		t.Errorf("err = %v, want a scope error", err)
	}
}

func TestManyOutsidersBecomeAny(t *testing.T) {
	inv := shopInventory()
	d, err := Recommend(Input{Inventory: inv, Flows: records(shopConns()), Scope: `app == "shop"`}, Options{MaxExternalAddrs: 3})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range d.Policy.Spec.Rules {
		if r.Name == "allow-any-to-shop-web" {
			found = len(r.Sources) == 0 && slices.Equal(r.Destinations, []string{"shop-web"})
		}
	}
	if !found {
		t.Fatalf("no rule allow-any-to-shop-web with any source in %+v", d.Policy.Spec.Rules)
	}
	e := compiled(t, inv, nil, d)
	f := eval.Flow{Src: netip.MustParseAddr("192.0.2.99"), Dst: netip.MustParseAddr("10.0.1.2"), Proto: 6, Port: 443, ICMPType: -1, ICMPCode: -1}
	if dec := e.Evaluate(f); dec.Verdict != policy.ActionAllow {
		t.Errorf("new outside client to web: %s by %s, want allow", dec.Verdict, dec.Rule)
	}
}

func TestNoFlowsOnlyCloses(t *testing.T) {
	d, err := Recommend(Input{Inventory: shopInventory(), Scope: `app == "shop"`}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := d.Policy.Spec.Rules
	if len(rs) != 1 || rs[0].Action != policy.ActionDrop || len(d.Evidence) != 0 {
		t.Errorf("rules %+v, evidence %v; want only the closing drop", rs, d.Evidence)
	}
}

func putDraft(s *policy.Set, d *Draft) *policy.Set {
	s = s.Clone()
	for _, o := range d.Objects() {
		s.Put(o)
	}
	return s
}

// TestIncremental: a second run over the same flows proposes nothing; new
// flows get only new rules; rules whose flows stopped are reported stale
// and removed only when asked.
func TestIncremental(t *testing.T) {
	inv := shopInventory()
	scope := `app == "shop"`
	first, err := Recommend(Input{Inventory: inv, Flows: records(shopConns()), Scope: scope}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if first.Changes.Incremental || len(first.Changes.Added) != len(first.Policy.Spec.Rules) {
		t.Fatalf("fresh draft changes %+v", first.Changes)
	}
	set := putDraft(policy.NewSet(), first)

	again, err := Recommend(Input{Inventory: inv, Existing: set, Flows: records(shopConns()), Scope: scope}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := again.Changes
	if !c.Incremental || len(c.Added) != 0 || len(c.Stale) != 0 || len(c.Unchanged) != len(first.Policy.Spec.Rules)-1 {
		t.Errorf("same flows again: %+v", c)
	}
	if len(again.Groups) != 0 || len(again.Services) != 0 {
		t.Errorf("same flows again created %d groups, %d services", len(again.Groups), len(again.Services))
	}
	if chg := policy.DiffSets(set, putDraft(set, again)); len(chg) != 0 {
		t.Errorf("same flows again changes the set: %+v", chg)
	}
	for _, name := range c.Unchanged {
		if ev := again.Evidence[name]; ev == nil || ev.Flows == 0 {
			t.Errorf("unchanged rule %s has no evidence", name)
		}
	}

	// The CRM client stops calling; a web server starts calling the db.
	var conns []tconn
	for _, cn := range shopConns() {
		if cn.src != "10.0.5.1" {
			conns = append(conns, cn)
		}
	}
	conns = append(conns, tconn{proto: 6, src: "10.0.1.2", dst: "10.0.3.1", sport: 47000, dport: 5432})
	for _, prune := range []bool{false, true} {
		d, err := Recommend(Input{Inventory: inv, Existing: set, Flows: records(conns), Scope: scope}, Options{Prune: prune, Mode: policy.ModeStaged})
		if err != nil {
			t.Fatal(err)
		}
		c := d.Changes
		if !slices.Equal(c.Added, []string{"allow-shop-web-to-shop-db"}) {
			t.Errorf("prune=%v: added %v, want only the web to db rule", prune, c.Added)
		}
		// The DNS rule of shop-api, shop-db and shop-web lost the CRM's
		// own DNS query too, but it is still used by the shop's.
		if !slices.Equal(c.Stale, []string{"allow-crm-app-to-shop-api"}) {
			t.Errorf("prune=%v: stale %v", prune, c.Stale)
		}
		var names []string
		for _, r := range d.Policy.Spec.Rules {
			names = append(names, r.Name)
			if r.Name == "allow-shop-web-to-shop-db" && r.Mode != policy.ModeStaged {
				t.Errorf("new rule mode %q, want staged", r.Mode)
			}
		}
		if has := slices.Contains(names, "allow-crm-app-to-shop-api"); has == prune {
			t.Errorf("prune=%v: rules %v", prune, names)
		}
		if prune && !slices.Equal(c.Removed, []string{"allow-crm-app-to-shop-api"}) {
			t.Errorf("removed %v", c.Removed)
		}
		if last := d.Policy.Spec.Rules[len(d.Policy.Spec.Rules)-1]; last.Action != policy.ActionDrop {
			t.Errorf("last rule %s is not the closing drop", last.Name)
		}
		next := putDraft(set, d)
		e := compiled(t, inv, next, &Draft{Policy: next.Policies[d.Policy.Metadata.Name]})
		f := eval.Flow{Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.3.1"), Proto: 6, Port: 5432, ICMPType: -1, ICMPCode: -1}
		if dec := e.Evaluate(f); dec.StagedRuleID == 0 || !strings.Contains(dec.StagedRule, "allow-shop-web-to-shop-db") {
			t.Errorf("prune=%v: web -> db staged decision %+v", prune, dec)
		}
	}
}

// TestIncrementalNewOutsider: a new outside address on an existing port is
// a new rule for that address alone.
func TestIncrementalNewOutsider(t *testing.T) {
	inv := shopInventory()
	scope := `app == "shop"`
	first, err := Recommend(Input{Inventory: inv, Flows: records(shopConns()), Scope: scope}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	set := putDraft(policy.NewSet(), first)
	conns := append(shopConns(), tconn{proto: 6, src: "192.0.2.7", dst: "10.0.1.2", sport: 40100, dport: 443})
	d, err := Recommend(Input{Inventory: inv, Existing: set, Flows: records(conns), Scope: scope}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Changes.Added) != 1 {
		t.Fatalf("added %v", d.Changes.Added)
	}
	for _, r := range d.Policy.Spec.Rules {
		if r.Name == d.Changes.Added[0] && !slices.Equal(r.Sources, []string{"192.0.2.7"}) {
			t.Errorf("new rule %+v, want source 192.0.2.7 only", r)
		}
	}
}

// TestAggregatorStreams: records fed one at a time through one reused
// record give the draft Recommend gives, and records already merged per
// connection give it without remembering IDs.
func TestAggregatorStreams(t *testing.T) {
	inv, recs := shopInventory(), records(shopConns())
	want, err := Recommend(Input{Inventory: inv, Flows: recs, Scope: `app == "shop"`}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	merged := map[string]flow.Record{}
	for _, r := range recs {
		if m, ok := merged[r.ID]; !ok || r.SrcBytes+r.DstBytes > m.SrcBytes+m.DstBytes {
			merged[r.ID] = r
		}
	}
	for _, one := range []bool{false, true} {
		a, err := NewAggregator(inv, `app == "shop"`, Options{OneRecordPerConnection: one})
		if err != nil {
			t.Fatal(err)
		}
		var rec flow.Record
		feed := recs
		if one {
			feed = nil
			for _, id := range slices.Sorted(maps.Keys(merged)) {
				feed = append(feed, merged[id])
			}
		}
		for _, r := range feed {
			rec = r
			a.Add(&rec)
			rec = flow.Record{ID: "garbage", Src: netip.MustParseAddr("10.0.1.1")} // reuse must not leak
		}
		got, err := a.Draft(nil)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := render(t, got), render(t, want); !bytes.Equal(g, w) {
			t.Errorf("one record per connection=%v: streamed draft differs:\n%s\nwant\n%s", one, g, w)
		}
		// The CRM's DNS query has no end in the shop; the drop is no
		// connection.
		if st := a.Stats(); st.Records != uint64(len(feed)) || st.Connections != uint64(len(shopConns())-1) || st.Ignored != 2 {
			t.Errorf("stats %+v, want %d records, %d connections, 2 ignored", st, len(feed), len(shopConns())-1)
		}
	}
}
