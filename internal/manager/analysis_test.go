package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// analysisInventory: a shop with an untagged cache, and an HR portal.
const analysisInventory = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web1}
spec: {ips: [10.7.1.1], host: h1, tags: {app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: api1}
spec: {ips: [10.7.2.1], host: h1, tags: {app: shop, tier: api}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db1}
spec: {ips: [10.7.3.1], host: h2, tags: {app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: cache1}
spec: {ips: [10.7.3.2], host: h2}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: hr1}
spec: {ips: [10.8.1.1], host: h2, tags: {app: hr, tier: web}}
`

// analysisPolicy allows the shop's tiers; everything else falls to the
// default rule, which allows.
const analysisPolicy = `apiVersion: bulkhead.io/v1
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
kind: Policy
metadata: {name: shop}
spec:
  category: Application
  rules:
  - {name: web, destinations: [shop-web], services: [tcp/443], action: allow}
  - {name: api, sources: [shop-web], destinations: [shop-api], services: [tcp/8080], action: allow}
  - {name: db, sources: [shop-api], destinations: [10.7.3.1], services: [tcp/5432], action: allow}
  - {name: attacker, sources: [10.66.0.9], action: drop}
`

func applyText(t *testing.T, c *apiclient.Client, text string) api.ApplyResponse {
	t.Helper()
	docs, err := policy.Decode("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Apply(context.Background(), api.ApplyRequest{Documents: wire(t, docs)})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

// ingestShop sends a day of the shop's flows, as two hosts report them.
func ingestShop(t *testing.T, tm *testManager) {
	t.Helper()
	now := time.Now().UTC()
	n := 0
	conn := func(src, dst string, port uint16, count int, age time.Duration) []flow.Record {
		var out []flow.Record
		for range count {
			n++
			start := now.Add(-age).Add(time.Duration(n) * time.Millisecond)
			out = append(out, flow.Record{ID: fmt.Sprintf("c%d", n), Kind: flow.KindEnd,
				Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 6, SrcPort: 40000, DstPort: port,
				SrcBytes: 300, SrcPackets: 5, DstBytes: 3000, DstPackets: 6,
				Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second), RuleID: 1, Verdict: flow.Allow})
		}
		return out
	}
	var h1 []flow.Record
	h1 = append(h1, conn("203.0.113.5", "10.7.1.1", 443, 6, time.Hour)...) // green
	h1 = append(h1, conn("10.7.1.1", "10.7.2.1", 8080, 4, time.Hour)...)   // green
	h1 = append(h1, conn("10.7.2.1", "10.7.3.1", 5432, 3, time.Hour)...)   // green
	h1 = append(h1, conn("10.7.2.1", "10.7.3.2", 6379, 5, time.Hour)...)   // amber
	h1 = append(h1, conn("10.66.0.9", "10.7.1.1", 22, 1, 2*time.Hour)...)  // red now
	h1 = append(h1, conn("10.7.1.1", "10.8.1.1", 80, 2, 72*time.Hour)...)  // amber, three days ago
	if err := tm.srv.IngestFlows(context.Background(), "h1", h1); err != nil {
		t.Fatal(err)
	}
	drop := flow.Record{ID: "d1", Kind: flow.KindDrop, Src: netip.MustParseAddr("10.66.0.9"), Dst: netip.MustParseAddr("10.7.3.1"),
		Proto: 6, DstPort: 5432, SrcPackets: 12, Start: now.Add(-time.Minute), Seen: now.Add(-time.Minute), RuleID: 1, Verdict: flow.Drop}
	if err := tm.srv.IngestFlows(context.Background(), "h2", []flow.Record{drop}); err != nil {
		t.Fatal(err)
	}
}

func findEdge(t *testing.T, edges []api.MapEdge, from, to string) api.MapEdge {
	t.Helper()
	for _, e := range edges {
		if e.From == from && e.To == to {
			return e
		}
	}
	t.Fatalf("no edge %s -> %s in %+v", from, to, edges)
	return api.MapEdge{}
}

func TestMapComplianceWhatIf(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	op, aud := tm.client(t, api.RoleOperator), tm.client(t, api.RoleAuditor)
	// Revision 1 has no rules: the default allows everything.
	first := applyText(t, op, analysisInventory+"---\napiVersion: bulkhead.io/v1\nkind: Service\nmetadata: {name: https}\nspec: {ports: [tcp/443]}\n").Revision
	ingestShop(t, tm)

	// Before any policy, everything allowed is amber.
	comp, err := aud.Compliance(ctx, apiclient.AnalysisQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (api.ComplianceCounts{Amber: 21, Red: 1, Total: 22}); comp.Total != want {
		t.Errorf("no policy: %+v, want %+v", comp.Total, want)
	}
	rev := applyText(t, op, analysisPolicy).Revision

	m, err := aud.Map(ctx, apiclient.AnalysisQuery{Level: "app", Since: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Level != "app" || m.Revision != rev || m.Window.Since.IsZero() {
		t.Errorf("map header %+v", m)
	}
	shop := findEdge(t, m.Edges, "shop", "shop")
	if shop.Connections != 12 || shop.BytesSent != 12*300 || shop.BytesReceived != 12*3000 || shop.Packets != 12*11 {
		t.Errorf("shop -> shop %+v", shop.Traffic)
	}
	if c := shop.Compliance; c == nil || c.Green != 7 || c.Amber != 5 {
		t.Errorf("shop -> shop compliance %+v", c)
	}
	if len(shop.Services) != 3 || shop.Services[0].Service != "tcp/6379" || shop.Services[0].Connections != 5 {
		t.Errorf("shop services %+v", shop.Services)
	}
	att := findEdge(t, m.Edges, "external:private", "shop")
	if att.Connections != 1 || att.Drops != 1 || att.DroppedPackets != 12 || att.Compliance.Red != 2 {
		t.Errorf("attacker edge %+v", att.Traffic)
	}
	for _, e := range m.Edges {
		if e.To == "hr" {
			t.Errorf("a flow three days old is in a 24h map: %+v", e)
		}
	}
	var cacheSeen bool
	for _, n := range m.Nodes {
		if n.ID == "shop" && (n.Members != 4 || n.Proposed != 1) {
			t.Errorf("shop node %+v (cache1 is placed by discovery)", n)
		}
		cacheSeen = cacheSeen || n.ID == "shop"
	}
	if !cacheSeen {
		t.Errorf("no shop node: %+v", m.Nodes)
	}

	// The workload level keeps addresses; a week reaches the HR flows.
	wm, err := aud.Map(ctx, apiclient.AnalysisQuery{Level: "workload", Since: "7d", Scope: `app == "hr"`})
	if err != nil {
		t.Fatal(err)
	}
	if len(wm.Edges) != 1 || wm.Edges[0].From != "web1" || wm.Edges[0].To != "hr1" || wm.Scope != `app == "hr"` {
		t.Errorf("hr scope: %+v", wm.Edges)
	}

	comp, err = aud.Compliance(ctx, apiclient.AnalysisQuery{Level: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (api.ComplianceCounts{Green: 13, Amber: 7, Red: 2, Total: 22}); comp.Total != want || comp.Revision != rev {
		t.Errorf("compliance total %+v (revision %d), want %+v (revision %d)", comp.Total, comp.Revision, want, rev)
	}
	rows := map[string]api.ComplianceCounts{}
	for _, n := range comp.Nodes {
		rows[n.Node] = n.Counts
	}
	if c := rows["shop"]; c.Green != 13 || c.Amber != 7 || c.Red != 2 {
		t.Errorf("shop row %+v", c)
	}
	if c := rows["hr"]; c.Amber != 2 || c.Total != 2 {
		t.Errorf("hr row %+v", c)
	}
	if len(comp.Edges) == 0 || comp.Edges[0].From == "" {
		t.Errorf("compliance edges %+v", comp.Edges)
	}
	// Against revision 1 nothing is protected.
	old, err := aud.Compliance(ctx, apiclient.AnalysisQuery{Revision: first})
	if want := (api.ComplianceCounts{Amber: 21, Red: 1, Total: 22}); err != nil || old.Total != want || old.Revision != first {
		t.Errorf("revision %d: %+v, %v; want %+v", first, old.Total, err, want)
	}

	// A draft that closes the database drops the three api -> db flows.
	draft := strings.Replace(analysisPolicy, "services: [tcp/5432], action: allow", "services: [tcp/5432], action: drop", 1) + `---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: lockdown}
spec:
  category: Emergency
  rules:
  - {name: no-cache, destinations: [10.7.3.2], action: reject}
`
	docs, err := policy.Decode("draft.yaml", []byte(draft))
	if err != nil {
		t.Fatal(err)
	}
	wi, err := aud.WhatIf(ctx, api.WhatIfRequest{Documents: wire(t, docs), Since: "7d", Level: "workload", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if wi.Records != 22 || wi.WouldDrop != 8 || wi.WouldAllow != 0 || wi.Changed != 2 || wi.Candidate != "draft" || wi.Baseline != rev {
		t.Fatalf("what-if %+v", wi)
	}
	x := wi.Examples[0]
	if x.Change != "drop" || x.SrcWorkload != "api1" || x.DstWorkload != "cache1" || x.Flows != 5 ||
		x.After.Rule != "lockdown/no-cache" || x.After.Verdict != "reject" || x.After.RuleID != 0 ||
		x.Before.Rule != "default" || x.Before.RuleID != 1 || x.Service != "tcp/6379" {
		t.Errorf("first example %+v", x)
	}
	if x := wi.Examples[1]; x.DstWorkload != "db1" || x.Before.Rule != "shop/db" || x.After.Rule != "shop/db" || x.After.RuleID == 0 {
		t.Errorf("second example %+v", x)
	}
	// Nothing was applied.
	if revs, _ := aud.Revisions(ctx, 10); revs[0].Number != rev {
		t.Errorf("what-if published revision %d", revs[0].Number)
	}

	// A draft that touches nothing used changes nothing.
	docs, _ = policy.Decode("noop.yaml", []byte(`apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: telnet}
spec:
  category: Emergency
  rules:
  - {name: no-telnet, services: [tcp/23], action: drop}
`))
	wi, err = aud.WhatIf(ctx, api.WhatIfRequest{Documents: wire(t, docs)})
	if err != nil || wi.WouldDrop != 0 || wi.WouldAllow != 0 || len(wi.Examples) != 0 || wi.Records != 22 {
		t.Errorf("no-op draft: %+v, %v", wi, err)
	}

	// Back to revision 1: the attacker's connection would be allowed
	// again, and so would its dropped attempts.
	wi, err = aud.WhatIf(ctx, api.WhatIfRequest{Revision: first})
	if err != nil {
		t.Fatal(err)
	}
	if wi.WouldAllow != 2 || wi.WouldDrop != 0 || wi.Candidate != fmt.Sprintf("revision %d", first) {
		t.Errorf("what-if revision %d: %+v", first, wi)
	}
}

func TestAnalysisErrors(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	aud := tm.client(t, api.RoleAuditor)
	status := func(err error) int {
		var e *apiclient.Error
		if errors.As(err, &e) {
			return e.Status
		}
		return 0
	}
	for _, tc := range []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"level", func() error { _, err := aud.Map(ctx, apiclient.AnalysisQuery{Level: "host"}); return err }(), 400, "env, app, tier or workload"},
		{"since", func() error { _, err := aud.Map(ctx, apiclient.AnalysisQuery{Since: "yesterday"}); return err }(), 400, "RFC 3339"},
		{"window", func() error {
			_, err := aud.Compliance(ctx, apiclient.AnalysisQuery{Since: "1h", Until: "2h"})
			return err
		}(), 400, "before since"},
		{"scope", func() error { _, err := aud.Map(ctx, apiclient.AnalysisQuery{Scope: `app == `}); return err }(), 400, "column"},
		{"revision", func() error { _, err := aud.Compliance(ctx, apiclient.AnalysisQuery{Revision: 42}); return err }(), 404, "revision 42"},
		{"whatif nothing", func() error { _, err := aud.WhatIf(ctx, api.WhatIfRequest{}); return err }(), 400, "documents"},
		{"whatif limit", func() error { _, err := aud.WhatIf(ctx, api.WhatIfRequest{Revision: 1, Limit: 5000}); return err }(), 400, "limit"},
		{"whatif revision", func() error { _, err := aud.WhatIf(ctx, api.WhatIfRequest{Revision: 42}); return err }(), 404, "revision 42"},
		{"whatif draft", func() error {
			docs, err := policy.Decode("bad.yaml", []byte("apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  category: Application\n  rules:\n  - {name: r, sources: [nosuch], action: allow}\n"))
			if err != nil {
				return err
			}
			_, err = aud.WhatIf(ctx, api.WhatIfRequest{Documents: wire(t, docs)})
			return err
		}(), http.StatusUnprocessableEntity, "nosuch"},
	} {
		if tc.err == nil || status(tc.err) != tc.code || !strings.Contains(tc.err.Error(), tc.msg) {
			t.Errorf("%s: %v (status %d), want %d saying %q", tc.name, tc.err, status(tc.err), tc.code, tc.msg)
		}
	}
}
