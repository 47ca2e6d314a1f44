package analysis

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// The test data center: a shop (two web servers, an api, a database and an
// untagged cache), a billing app, and outsiders.
const inventory = `
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web1}
spec: {ips: [10.0.1.1], tags: {env: prod, app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web2}
spec: {ips: [10.0.1.2], tags: {env: prod, app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: api1}
spec: {ips: [10.0.2.1], tags: {env: prod, app: shop, tier: api}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db1}
spec: {ips: [10.0.3.1], tags: {env: prod, app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: cache1}
spec: {ips: [10.0.3.2]}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: bweb1}
spec: {ips: [10.1.1.1], tags: {env: prod, app: billing, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: bapi1}
spec: {ips: [10.1.2.1], tags: {env: prod, app: billing, tier: api}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: bdb1}
spec: {ips: [10.1.3.1], tags: {env: prod, app: billing, tier: db}}
`

// The published policy: the default allows; the shop's tiers have rules;
// the attacker is quarantined; a staged rule would close billing's api to
// its web tier.
const published = `
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: shop-web}
spec: {match: app == "shop" && tier == "web"}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: shop-api}
spec: {match: app == "shop" && tier == "api"}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: shop-db}
spec: {match: app == "shop" && tier == "db"}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: quarantine}
spec:
  category: Emergency
  rules:
  - {name: attacker, sources: [10.9.9.9], action: drop}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: shop}
spec:
  category: Application
  rules:
  - {name: web, destinations: [shop-web], services: [tcp/443], action: allow}
  - {name: api, sources: [shop-web], destinations: [shop-api], services: [tcp/8080], action: allow}
  - {name: db, sources: [shop-api], destinations: [shop-db], services: [tcp/5432], action: allow}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: billing}
spec:
  category: Application
  rules:
  - {name: lockdown, destinations: [10.1.2.1], services: [tcp/8080], action: drop, mode: staged}
`

func decode(t testing.TB, text string) []policy.Object {
	t.Helper()
	docs, err := policy.Decode("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]policy.Object, len(docs))
	for i, d := range docs {
		out[i] = d.Object
	}
	return out
}

func workloads(t testing.TB) []*policy.Workload {
	var out []*policy.Workload
	for _, o := range decode(t, inventory) {
		out = append(out, o.(*policy.Workload))
	}
	return out
}

// compile builds a revision the way the manager does: objects put in a
// set, rule ids from 100, the inventory added, validated, compiled.
func compile(t testing.TB, wls []*policy.Workload, texts ...string) *eval.Evaluator {
	t.Helper()
	s := policy.NewSet()
	for _, text := range texts {
		for _, o := range decode(t, text) {
			s.Put(o)
		}
	}
	next := uint32(100)
	s.AssignRuleIDs(func() uint32 { next++; return next - 1 })
	for _, w := range wls {
		s.Workloads[w.Metadata.Name] = w
	}
	if errs := s.Validate(nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	ev, err := eval.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type history struct {
	recs []flow.Record
	n    int
}

var addrs = map[string]string{
	"web1": "10.0.1.1", "web2": "10.0.1.2", "api1": "10.0.2.1", "db1": "10.0.3.1", "cache1": "10.0.3.2",
	"bweb1": "10.1.1.1", "bapi1": "10.1.2.1", "bdb1": "10.1.3.1",
}

// conn adds n connections; ends are workload names or addresses. Only the
// source is named, as a host running only the source reports it.
func (h *history) conn(src, dst, svc string, n int) {
	proto, port := parseSvc(svc)
	for range n {
		h.n++
		r := flow.Record{ID: fmt.Sprintf("h/%d", h.n), Kind: flow.KindEnd, Src: addrOf(src), Dst: addrOf(dst),
			Proto: proto, SrcPort: 40000, DstPort: port, SrcBytes: 100, DstBytes: 1000, SrcPackets: 3, DstPackets: 4,
			Start: t0.Add(time.Duration(h.n) * time.Second), Seen: t0.Add(time.Duration(h.n+1) * time.Second),
			Verdict: flow.Allow, RuleID: 1}
		if _, ok := addrs[src]; ok {
			r.SrcWorkload = src
		}
		if proto == 1 {
			r.DstPort, r.ICMPType = 0, 8
		}
		h.recs = append(h.recs, r)
	}
}

// drop adds a drop record of packets blocked attempts.
func (h *history) drop(src, dst, svc string, packets uint64) {
	proto, port := parseSvc(svc)
	h.n++
	h.recs = append(h.recs, flow.Record{ID: fmt.Sprintf("d/%d", h.n), Kind: flow.KindDrop, Src: addrOf(src), Dst: addrOf(dst),
		Proto: proto, DstPort: port, SrcPackets: packets, Start: t0, Seen: t0.Add(time.Hour), Verdict: flow.Drop, RuleID: 100})
}

func addrOf(s string) netip.Addr {
	if a, ok := addrs[s]; ok {
		s = a
	}
	return netip.MustParseAddr(s)
}

func parseSvc(s string) (uint8, uint16) {
	var proto uint8
	name, port, _ := strings.Cut(s, "/")
	switch name {
	case "tcp":
		proto = 6
	case "udp":
		proto = 17
	case "icmp":
		proto = 1
	}
	var p uint16
	fmt.Sscan(port, &p)
	return proto, p
}

func shopHistory() *history {
	h := &history{}
	h.conn("203.0.113.7", "web1", "tcp/443", 5) // green: shop/web at web1's ingress
	h.conn("web1", "api1", "tcp/8080", 4)       // green
	h.conn("web2", "api1", "tcp/8080", 2)       // green
	h.conn("api1", "db1", "tcp/5432", 3)        // green
	h.conn("api1", "cache1", "tcp/6379", 6)     // amber: default only
	h.conn("web1", "api1", "icmp/8", 1)         // amber
	h.conn("bweb1", "bapi1", "tcp/8080", 7)     // dashed: staged lockdown
	h.conn("bapi1", "bdb1", "tcp/5432", 2)      // amber
	h.conn("198.51.100.1", "8.8.8.8", "udp/53", 1)
	h.conn("10.9.9.9", "web1", "tcp/22", 1) // allowed then, quarantined now: red
	h.drop("10.9.9.9", "db1", "tcp/5432", 40)
	return h
}

func analyze(t testing.TB, opts Options, recs []flow.Record) *Analyzer {
	t.Helper()
	a, err := New(workloads(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		// The store hands Scan's callback one reused record.
		r := recs[i]
		a.Add(&r)
	}
	return a
}

func edgeOf(t *testing.T, m *Map, from, to string) Edge {
	t.Helper()
	for _, e := range m.Edges {
		if e.From == from && e.To == to {
			return e
		}
	}
	var have []string
	for _, e := range m.Edges {
		have = append(have, e.From+" -> "+e.To)
	}
	t.Fatalf("no edge %s -> %s at level %s; have %v", from, to, m.Level, have)
	return Edge{}
}

func nodeOf(t *testing.T, m *Map, id string) Node {
	t.Helper()
	for _, n := range m.Nodes {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("no node %s at level %s", id, m.Level)
	return Node{}
}

func TestComplianceClasses(t *testing.T) {
	wls := workloads(t)
	ev := compile(t, wls, published)
	h := shopHistory()
	a := analyze(t, Options{Eval: ev}, h.recs)
	m := a.Map(LevelWorkload, nil)
	tests := []struct {
		from, to string
		want     Counts
	}{
		{"203.0.113.7", "web1", Counts{Green: 5}},
		{"web1", "api1", Counts{Green: 4, Amber: 1}}, // the ping is the default's
		{"web2", "api1", Counts{Green: 2}},
		{"api1", "db1", Counts{Green: 3}},
		{"api1", "cache1", Counts{Amber: 6}},
		{"bweb1", "bapi1", Counts{Dashed: 7}},
		{"bapi1", "bdb1", Counts{Amber: 2}},
		{"198.51.100.1", "8.8.8.8", Counts{Amber: 1}}, // no enforcement point
		{"10.9.9.9", "web1", Counts{Red: 1}},
		{"10.9.9.9", "db1", Counts{Red: 1}}, // a drop record
	}
	for _, tc := range tests {
		e := edgeOf(t, m, tc.from, tc.to)
		if e.Classes != tc.want {
			t.Errorf("%s -> %s: classes %+v, want %+v", tc.from, tc.to, e.Classes, tc.want)
		}
	}
	want := Counts{Green: 14, Amber: 10, Red: 2, Dashed: 7}
	if got := a.Total().Classes; got != want {
		t.Errorf("total %+v, want %+v", got, want)
	}
	if got := m.Total.Classes; got != want {
		t.Errorf("map total %+v, want %+v", got, want)
	}
	if len(a.cache) != 11 {
		t.Errorf("%d decisions cached, want one per distinct flow (11)", len(a.cache))
	}
	// Without a policy there are no classes, and the map is the same.
	plain := analyze(t, Options{}, h.recs).Map(LevelWorkload, nil)
	if plain.Total.Classes.Total() != 0 || len(plain.Edges) != len(m.Edges) {
		t.Errorf("no policy: classes %+v, %d edges (want 0, %d)", plain.Total.Classes, len(plain.Edges), len(m.Edges))
	}
}

// TestClassifyPrecedence decides flows directly against a default-drop
// policy, where the default rule is what makes a flow red.
func TestClassifyPrecedence(t *testing.T) {
	wls := workloads(t)
	ev := compile(t, wls, published, `
apiVersion: bulkhead.io/v1
kind: DefaultRule
metadata: {name: default}
spec: {action: drop}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: egress}
spec:
  category: Application
  rules:
  - {name: web-out, sources: [shop-web], direction: out, action: allow}
`)
	f := func(src, dst string, port uint16) eval.Flow {
		return eval.Flow{Src: addrOf(src), Dst: addrOf(dst), Proto: 6, Port: port, ICMPType: -1, ICMPCode: -1}
	}
	for _, tc := range []struct {
		name string
		f    eval.Flow
		want Class
	}{
		{"specific rule", f("web1", "api1", 8080), Green},
		{"default drop", f("api1", "cache1", 6379), Red},
		// Allowed at web1's egress by a rule, dropped at bapi1's ingress.
		{"one point drops", f("web1", "bapi1", 8080), Red},
		{"no point", f("198.51.100.1", "8.8.8.8", 53), Amber},
		{"staged drop", f("203.0.113.7", "bapi1", 8080), Red}, // default drop wins
	} {
		d := ev.Evaluate(tc.f)
		if got := Classify(&d); got != tc.want {
			t.Errorf("%s: %s (verdict %s rule %d, staged %s), want %s", tc.name, got, d.Verdict, d.RuleID, d.StagedVerdict, tc.want)
		}
	}
	// The default allows; a staged rule would drop: dashed, not amber.
	ev = compile(t, wls, published)
	d := ev.Evaluate(f("203.0.113.7", "bapi1", 8080))
	if got := Classify(&d); got != Dashed || d.RuleID != policy.DefaultRuleID {
		t.Errorf("default allow + staged drop: %s by rule %d, want dashed by the default", got, d.RuleID)
	}
}

func TestMapLevels(t *testing.T) {
	a := analyze(t, Options{}, shopHistory().recs)
	m := a.Map(LevelApp, nil)
	e := edgeOf(t, m, "prod/shop", "prod/shop")
	// web->api 4+2+1 (ping), api->db 3, api->cache1 6 (cache1 placed in the shop)
	if e.Connections != 16 || e.Sent != 1600 || e.Received != 16000 || e.Packets != 16*7 {
		t.Errorf("shop inside: %+v", e.Traffic)
	}
	if got := servicesOf(e); got != "tcp/6379:6 tcp/8080:6 tcp/5432:3 icmp/8/0:1" {
		t.Errorf("shop services %s", got)
	}
	if want := t0.Add(6 * time.Second); !e.First.Equal(want) {
		t.Errorf("first seen %v, want %v", e.First, want)
	}
	in := edgeOf(t, m, "external:internet", "prod/shop")
	if in.Connections != 5 {
		t.Errorf("internet -> shop: %d connections, want 5", in.Connections)
	}
	att := edgeOf(t, m, "external:private", "prod/shop")
	if att.Connections != 1 || att.Drops != 1 || att.DroppedPackets != 40 {
		t.Errorf("attacker -> shop: %+v", att.Traffic)
	}
	edgeOf(t, m, "prod/billing", "prod/billing")
	edgeOf(t, m, "external:internet", "external:internet") // 198.51.100.1 -> 8.8.8.8
	shop := nodeOf(t, m, "prod/shop")
	if shop.Members != 5 || shop.Proposed != 1 || shop.App != "shop" || shop.Env != "prod" || shop.Tier != "" {
		t.Errorf("shop node %+v", shop)
	}
	// Each record counts once for a node, even inside it.
	if shop.Traffic.Records() != 16+5+2 {
		t.Errorf("shop node counts %d records, want 23", shop.Traffic.Records())
	}

	tiers := a.Map(LevelTier, nil)
	edgeOf(t, tiers, "prod/shop/web", "prod/shop/api")
	edgeOf(t, tiers, "prod/shop/api", "prod/shop/cache")
	if web := nodeOf(t, tiers, "prod/shop/web"); web.Members != 2 {
		t.Errorf("web tier members %d, want 2", web.Members)
	}
	envs := a.Map(LevelEnv, nil)
	if e := edgeOf(t, envs, "prod", "prod"); e.Connections != 16+9 {
		t.Errorf("prod inside: %d connections, want 25", e.Connections)
	}
	wl := a.Map(LevelWorkload, nil)
	ext := nodeOf(t, wl, "203.0.113.7")
	if !ext.External || ext.Range != RangeInternet || ext.Addr != netip.MustParseAddr("203.0.113.7") {
		t.Errorf("external node %+v", ext)
	}
	c := nodeOf(t, wl, "cache1")
	if c.App != "shop" || c.Tier != "cache" || c.Proposed != 1 {
		t.Errorf("cache1 placed %+v, want shop/cache proposed", c)
	}
	if got := len(m.Edges); got != 5 {
		t.Errorf("%d app edges, want 5", got)
	}
	// The busiest edge comes first.
	if m.Edges[0].From != "prod/shop" || m.Edges[0].To != "prod/shop" {
		t.Errorf("first edge %s -> %s", m.Edges[0].From, m.Edges[0].To)
	}
}

func servicesOf(e Edge) string {
	var parts []string
	for _, s := range e.Services {
		parts = append(parts, fmt.Sprintf("%s:%d", s, s.Connections+s.Drops))
	}
	return strings.Join(parts, " ")
}

func TestUntaggedWithoutDiscovery(t *testing.T) {
	a := analyze(t, Options{NoDiscovery: true}, shopHistory().recs)
	m := a.Map(LevelTier, nil)
	edgeOf(t, m, "prod/shop/api", "untagged/untagged")
	n := nodeOf(t, m, "untagged/untagged")
	if n.Proposed != 0 || n.App != Untagged || n.Tier != Untagged {
		t.Errorf("untagged node %+v", n)
	}
	if n := nodeOf(t, a.Map(LevelEnv, nil), Untagged); n.Members != 1 {
		t.Errorf("untagged env %+v", n)
	}
}

func TestScope(t *testing.T) {
	a := analyze(t, Options{}, shopHistory().recs)
	expr, err := tagexpr.Parse(`app == "billing"`)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Map(LevelWorkload, expr)
	if len(m.Edges) != 2 || m.Total.Connections != 9 {
		t.Errorf("billing scope: %d edges, %d connections; want 2, 9", len(m.Edges), m.Total.Connections)
	}
	// Proposed tags are in scope too.
	expr, _ = tagexpr.Parse(`tier == "cache"`)
	if m := a.Map(LevelWorkload, expr); len(m.Edges) != 1 || m.Edges[0].To != "cache1" {
		t.Errorf("cache scope: %+v", m.Edges)
	}
}

func TestRangeOf(t *testing.T) {
	for addr, want := range map[string]string{
		"10.1.2.3": RangePrivate, "172.16.0.1": RangePrivate, "192.168.1.1": RangePrivate, "100.64.0.1": RangePrivate,
		"fd00::1": RangePrivate, "8.8.8.8": RangeInternet, "2001:db8::1": RangeInternet, "127.0.0.1": RangeLoopback,
		"::1": RangeLoopback, "169.254.1.1": RangeLinkLocal, "fe80::1": RangeLinkLocal, "224.0.0.251": RangeLinkLocal,
		"239.1.1.1": RangeMulticast, "::ffff:10.0.0.1": RangePrivate,
	} {
		if got := RangeOf(netip.MustParseAddr(addr)); got != want {
			t.Errorf("RangeOf(%s) = %s, want %s", addr, got, want)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for _, l := range []Level{LevelEnv, LevelApp, LevelTier, LevelWorkload} {
		if got, err := ParseLevel(l.String()); err != nil || got != l {
			t.Errorf("ParseLevel(%q) = %v, %v", l, got, err)
		}
	}
	if l, err := ParseLevel(""); err != nil || l != LevelApp {
		t.Errorf("default level %v, %v", l, err)
	}
	if _, err := ParseLevel("host"); err == nil || !strings.Contains(err.Error(), "env, app, tier or workload") {
		t.Errorf("bad level: %v", err)
	}
}

func TestWhatIf(t *testing.T) {
	wls := workloads(t)
	current := compile(t, wls, published)
	h := shopHistory()

	// The draft turns the shop's database rule into a drop and lifts the
	// quarantine.
	draft := strings.Replace(published, "{name: db, sources: [shop-api], destinations: [shop-db], services: [tcp/5432], action: allow}",
		"{name: db, sources: [shop-api], destinations: [shop-db], services: [tcp/5432], action: drop}", 1)
	draft = strings.Replace(draft, "{name: attacker, sources: [10.9.9.9], action: drop}", "{name: attacker, sources: [10.9.9.10], action: drop}", 1)
	a := analyze(t, Options{Eval: current, Candidate: compile(t, wls, draft)}, h.recs)
	w := a.WhatIf(LevelWorkload, 10)
	if w.Total.WouldDrop != 3 || w.Total.WouldAllow != 2 || w.Changed != 3 {
		t.Fatalf("would drop %d, would allow %d, %d distinct; want 3, 2, 3", w.Total.WouldDrop, w.Total.WouldAllow, w.Changed)
	}
	x := w.Examples[0]
	if !x.WouldDrop() || x.SrcWorkload != "api1" || x.DstWorkload != "db1" || x.Service.String() != "tcp/5432" || x.Flows != 3 ||
		x.Before.Rule != "shop/db" || x.Before.Verdict != policy.ActionAllow || x.After.Rule != "shop/db" || x.After.Verdict != policy.ActionDrop {
		t.Errorf("first example %+v", x)
	}
	// api1 -> db1 are the 12th to 14th connections.
	if x.Bytes != 3*1100 || !x.Last.Equal(t0.Add(15*time.Second)) || x.SrcNode != "api1" {
		t.Errorf("example totals %+v", x)
	}
	for _, x := range w.Examples[1:] {
		if x.WouldDrop() || x.Src != netip.MustParseAddr("10.9.9.9") || x.Before.Rule != "quarantine/attacker" || x.After.Verdict != policy.ActionAllow {
			t.Errorf("would-allow example %+v", x)
		}
	}
	if len(w.Edges) != 3 || w.Edges[0].From != "api1" || w.Edges[0].WouldDrop != 3 {
		t.Errorf("edges %+v", w.Edges)
	}
	if ex := a.WhatIf(LevelWorkload, 1).Examples; len(ex) != 1 {
		t.Errorf("limit 1: %d examples", len(ex))
	}

	// A draft that closes a port nobody used changes nothing.
	unused := published + `---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: telnet}
spec:
  category: Emergency
  rules:
  - {name: no-telnet, services: [tcp/23], action: drop}
`
	a = analyze(t, Options{Eval: current, Candidate: compile(t, wls, unused)}, h.recs)
	if w := a.WhatIf(LevelApp, 10); w.Total.WouldDrop != 0 || w.Total.WouldAllow != 0 || len(w.Examples) != 0 || len(w.Edges) != 0 {
		t.Errorf("unused draft: %+v", w)
	}
	if _, err := New(wls, Options{Candidate: current}); err == nil {
		t.Error("a candidate without a current policy was accepted")
	}
}

// TestAddAllocs: once a flow and its edge are known, counting another
// record of it allocates nothing.
func TestAddAllocs(t *testing.T) {
	wls := workloads(t)
	ev := compile(t, wls, published)
	h := shopHistory()
	a := analyze(t, Options{Eval: ev, Candidate: compile(t, wls, published)}, h.recs)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		a.Add(&h.recs[i%len(h.recs)])
		i++
	})
	if allocs != 0 {
		t.Errorf("Add allocates %.1f times per known record", allocs)
	}
}

// FuzzAnalyze feeds records built from arbitrary bytes (any addresses,
// protocols, kinds, names and times) through every analysis: none may
// panic, and the counts must add up.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{10, 0, 1, 1, 10, 0, 2, 1, 6, 0x1f, 0x90, 2, 0, 5})
	f.Add([]byte{10, 9, 9, 9, 10, 0, 3, 1, 6, 0x15, 0x38, 3, 1, 40})
	f.Add([]byte{203, 0, 113, 7, 8, 8, 8, 8, 1, 8, 0, 1, 2, 1})
	f.Add([]byte{0, 0, 0, 0, 255, 255, 255, 255, 58, 128, 0, 9, 3, 0})
	wls := workloads(f)
	cur := compile(f, wls, published)
	cand := compile(f, wls, strings.Replace(published, "action: allow}", "action: drop}", 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := New(wls, Options{Eval: cur, Candidate: cand})
		if err != nil {
			t.Fatal(err)
		}
		var conns, drops uint64
		for len(data) >= 14 {
			b := data[:14]
			data = data[14:]
			r := flow.Record{
				Src: netip.AddrFrom4([4]byte(b[0:4])), Dst: netip.AddrFrom4([4]byte(b[4:8])), Proto: b[8],
				DstPort: uint16(b[9])<<8 | uint16(b[10]), ICMPType: b[9], ICMPCode: b[10], Kind: flow.Kind(b[11] % 4),
				SrcPackets: uint64(b[13]), SrcBytes: uint64(b[13]) * 60,
				Start: t0.Add(time.Duration(b[12]) * time.Minute), Seen: t0.Add(time.Duration(b[13]) * time.Minute),
			}
			if b[12]&1 == 1 {
				r.SrcWorkload = [...]string{"web1", "nosuch", "db1", ""}[b[12]>>1&3]
			}
			if b[11]&4 != 0 {
				r.Src = netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b[0], b[1], b[2], b[3]})
			}
			if r.Kind == flow.KindDrop {
				drops++
			} else {
				conns++
			}
			a.Add(&r)
		}
		for l := LevelEnv; l <= LevelWorkload; l++ {
			m := a.Map(l, nil)
			if m.Total.Connections != conns || m.Total.Drops != drops || m.Total.Classes.Total() != conns+drops {
				t.Fatalf("%s: total %+v, want %d connections, %d drops", l, m.Total, conns, drops)
			}
			var sum uint64
			for _, e := range m.Edges {
				sum += e.Records()
			}
			if sum != conns+drops {
				t.Fatalf("%s: edges hold %d records, want %d", l, sum, conns+drops)
			}
		}
		w := a.WhatIf(LevelApp, 5)
		if w.Total.WouldDrop+w.Total.WouldAllow > conns+drops || len(w.Examples) > 5 {
			t.Fatalf("what-if %+v", w.Total)
		}
	})
}

// TestUserDecides: two connections alike but for their user are decided
// apart when a rule names users, so compliance follows the directory.
func TestUserDecides(t *testing.T) {
	wls := workloads(t)
	ev := compile(t, wls, `
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: hr-staff}
spec: {users: [alice]}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: hr}
spec:
  category: Application
  rules:
  - {name: hr-only, sources: [hr-staff], destinations: [10.0.2.1], services: [tcp/8080], action: allow}
  - {name: rest, destinations: [10.0.2.1], services: [tcp/8080], action: drop}
`)
	a, err := New(wls, Options{Eval: ev, NoDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	h := &history{}
	h.conn("10.7.0.5", "api1", "tcp/8080", 2)
	h.recs[0].User, h.recs[1].User = "alice", "bob"
	for i := range h.recs {
		a.Add(&h.recs[i])
	}
	if c := a.Total().Classes; c.Green != 1 || c.Red != 1 {
		t.Errorf("classes %+v: want alice's connection green and bob's red", c)
	}
	// The map shows who is behind an edge.
	m := a.Map(LevelWorkload, nil)
	if len(m.Edges) != 1 || len(m.Edges[0].Users) != 2 || m.Edges[0].Users[0] != (UserCount{"alice", 1}) || m.Edges[0].Users[1] != (UserCount{"bob", 1}) {
		t.Errorf("map edges %+v: want one edge with alice and bob", m.Edges)
	}
}
