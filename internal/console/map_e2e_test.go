package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/console"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// mapInventory is a small shop in prod (web, api, db), the desktops that
// use it, and an outsider that scans it. No policy: every flow falls to
// the default rule.
const mapInventory = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web-1}
spec: {ips: [10.20.1.11], host: host-1, tags: {env: prod, app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web-2}
spec: {ips: [10.20.1.12], host: host-1, tags: {env: prod, app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: api-1}
spec: {ips: [10.20.2.11], host: host-2, tags: {env: prod, app: shop, tier: api}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db-1}
spec: {ips: [10.20.3.11], host: host-2, tags: {env: prod, app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: desk-1}
spec: {ips: [10.30.1.21], host: host-3, tags: {env: prod, app: clients, tier: desktop}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: desk-2}
spec: {ips: [10.30.1.22], host: host-3, tags: {env: prod, app: clients, tier: desktop}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: intruder}
spec: {ips: [10.66.6.6], host: host-3, tags: {env: prod, app: outsider, tier: laptop}}
`

// mapFlows is a day of the shop's traffic as agents report it, and the
// outsider's scan: 30 ports of web-1 and the database, never answered.
func mapFlows(now time.Time) []flow.Record {
	var out []flow.Record
	n := 0
	add := func(src, dst string, port uint16, count int, answered bool) {
		for range count {
			n++
			start := now.Add(-time.Duration(n) * 37 * time.Second)
			r := flow.Record{ID: fmt.Sprintf("m%d", n), Kind: flow.KindEnd, Host: "host-1",
				Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 6,
				SrcPort: uint16(40000 + n), DstPort: port, SrcBytes: 800, SrcPackets: 8, DstBytes: 12000, DstPackets: 10,
				Start: start, End: start.Add(2 * time.Second), Seen: start.Add(2 * time.Second),
				RuleID: policy.DefaultRuleID, Verdict: flow.Allow}
			if !answered {
				r.SrcBytes, r.SrcPackets, r.DstBytes, r.DstPackets = 60, 1, 0, 0
			}
			out = append(out, r)
		}
	}
	add("10.30.1.21", "10.20.1.11", 443, 12, true)
	add("10.30.1.22", "10.20.1.12", 443, 9, true)
	add("10.30.1.22", "10.20.1.11", 443, 4, true)
	add("203.0.113.9", "10.20.1.11", 443, 5, true)
	add("10.20.1.11", "10.20.2.11", 8080, 10, true)
	add("10.20.1.12", "10.20.2.11", 8080, 8, true)
	add("10.20.2.11", "10.20.3.11", 5432, 12, true)
	for p := uint16(1); p <= 30; p++ {
		add("10.66.6.6", "10.20.1.11", p, 1, false)
	}
	add("10.66.6.6", "10.20.3.11", 5432, 3, false)
	return out
}

// TestMapInBrowser runs web/e2e/map.mjs in headless chromium against a
// manager holding the shop's workloads and flows but no policy: the map
// shows the shop's edges amber; the Recommendations page drafts a policy
// for the shop with its evidence and what-if, and applies it; the map
// then shows the shop's edges green and the outsider's red. Compliance,
// inventory membership and an auditor's read-only view are checked too.
//
// BULKHEAD_SCREENSHOTS=DIR writes the pages' PNGs there, as for
// TestConsoleInBrowser.
func TestMapInBrowser(t *testing.T) {
	node, root := needBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := startConsoleManager(t, ctx)
	srv, url, admin, adminToken := m.srv, m.url, m.admin, m.adminToken
	auditor, err := admin.CreateToken(ctx, api.TokenRequest{Name: "map-auditor", Role: api.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policy.Decode("inventory.yaml", []byte(mapInventory))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Apply(ctx, api.ApplyRequest{Documents: wireDocs(t, docs)}); err != nil {
		t.Fatalf("apply the inventory: %v", err)
	}
	if err := srv.IngestFlows(ctx, "host-1", mapFlows(time.Now().UTC())); err != nil {
		t.Fatal(err)
	}
	before, err := admin.Revisions(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	runScript(t, ctx, node, filepath.Join(root, "web"), "map.mjs",
		"BULKHEAD_URL="+url,
		"BULKHEAD_ADMIN_TOKEN="+strings.TrimSpace(string(adminToken)),
		"BULKHEAD_AUDITOR_TOKEN="+auditor.Secret,
	)
	if t.Failed() {
		return
	}

	// The browser's Apply published the shop's recommended policy as one
	// revision, and the flows it allows are compliant now.
	revs, err := admin.Revisions(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 1 || (len(before) > 0 && revs[0].Number != before[0].Number+1) || !strings.HasPrefix(revs[0].Summary, "recommend ") {
		t.Fatalf("latest revision after the browser test: %+v (before: %+v)", revs, before)
	}
	c, err := admin.Compliance(ctx, apiclient.AnalysisQuery{Level: "app", Since: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Edges {
		switch {
		case e.From == "prod/clients" && e.To == "prod/shop", e.From == "prod/shop" && e.To == "prod/shop":
			if e.Counts.Green == 0 || e.Counts.Green != e.Counts.Total {
				t.Errorf("edge %s -> %s after apply: %+v, want all green", e.From, e.To, e.Counts)
			}
		case e.From == "prod/outsider":
			if e.Counts.Red != e.Counts.Total {
				t.Errorf("edge %s -> %s after apply: %+v, want all red", e.From, e.To, e.Counts)
			}
		}
	}
}

func wireDocs(t *testing.T, docs []policy.Document) []api.Document {
	t.Helper()
	out := make([]api.Document, len(docs))
	for i, d := range docs {
		b, err := json.Marshal(d.Object)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = api.Document{Source: d.Source, Object: b}
	}
	return out
}

// needBrowser returns node and the repository root, or skips (fails in
// CI) when the browser test cannot run.
func needBrowser(t *testing.T) (node, root string) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	need := t.Skipf
	if os.Getenv("CI") != "" {
		need = t.Fatalf
	}
	if !console.Built() {
		need("browser test needs the built console: run make console")
	}
	if _, err := os.Stat(chromiumPath()); err != nil {
		need("browser test needs chromium at %s (apt-get install chromium): %v", chromiumPath(), err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		need("browser test needs node in PATH")
	}
	root, _ = filepath.Abs("../..")
	if _, err := os.Stat(filepath.Join(root, "web", "node_modules", "playwright-core")); err != nil {
		need("browser test needs web/node_modules: run make console")
	}
	return node, root
}

// runScript runs one of web/e2e's scripts and fails the test if it does.
func runScript(t *testing.T, ctx context.Context, node, web, name string, env ...string) {
	t.Helper()
	shots := os.Getenv("BULKHEAD_SCREENSHOTS")
	if shots != "" && !filepath.IsAbs(shots) {
		shots = filepath.Join(web, "..", shots)
	}
	script := exec.CommandContext(ctx, node, filepath.Join("e2e", name))
	script.Dir = web
	script.Env = append(os.Environ(), env...)
	script.Env = append(script.Env, "BULKHEAD_CHROMIUM="+chromiumPath(), "BULKHEAD_SCREENSHOTS="+shots)
	var out bytes.Buffer
	script.Stdout, script.Stderr = &out, &out
	start := time.Now()
	err := script.Run()
	t.Logf("web/e2e/%s (%s):\n%s", name, time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Errorf("browser test failed: %v", err)
	}
}
