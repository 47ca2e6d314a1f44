package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/manager"
)

const cliShop = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web-1}
spec: {ips: [10.3.1.1], tags: {app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: api-1}
spec: {ips: [10.3.2.1], tags: {app: shop, tier: api}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db-1}
spec: {ips: [10.3.3.1], tags: {app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: vm-9}
spec: {ips: [10.3.3.2]}
`

func ingestCLI(t *testing.T, srv *manager.Server, conns [][3]string) {
	t.Helper()
	now := time.Now().UTC()
	var recs []flow.Record
	for i, c := range conns {
		var port uint16
		fmt.Sscan(c[2], &port)
		start := now.Add(-time.Duration(i+1) * time.Minute)
		recs = append(recs, flow.Record{ID: fmt.Sprintf("%s-%d", t.Name(), i), Kind: flow.KindEnd,
			Src: netip.MustParseAddr(c[0]), Dst: netip.MustParseAddr(c[1]), Proto: 6, SrcPort: uint16(41000 + i), DstPort: port,
			SrcBytes: 10, DstBytes: 20, Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second), RuleID: 1, Verdict: flow.Allow})
	}
	if err := srv.IngestFlows(context.Background(), "h1", recs); err != nil {
		t.Fatal(err)
	}
}

func TestRecommendCommand(t *testing.T) {
	conn, srv := startManagerServer(t)
	with := func(args ...string) []string { return append(args, conn...) }
	mustRun(t, cliShop, with("apply", "-f", "-")...)
	var conns [][3]string
	for range 3 {
		conns = append(conns, [3]string{"10.3.1.1", "10.3.2.1", "8080"}, [3]string{"10.3.2.1", "10.3.3.1", "5432"},
			[3]string{"10.3.2.1", "10.3.3.2", "5432"})
	}
	ingestCLI(t, srv, conns)

	if _, err := run(t, "", with("recommend", "--scope", "app=shop", "--staged")...); err == nil {
		t.Error("--staged without --apply accepted")
	}
	draft := mustRun(t, "", with("recommend", "--scope", "app=shop", "--since", "7d")...)
	for _, want := range []string{`# Recommendation for app == "shop" from 9 records`, "kind: Policy", "name: allow-shop-web-to-shop-api",
		"description: observed 3 flows", "# New policy:", "# evidence allow-shop-web-to-shop-api: 3 flows"} {
		if !strings.Contains(draft, want) {
			t.Errorf("draft lacks %q:\n%s", want, draft)
		}
	}
	// What recommend prints, apply takes.
	out := mustRun(t, draft, with("apply", "-f", "-", "--dry-run")...)
	if !strings.Contains(out, "Policy/recommended-app-shop created") {
		t.Errorf("apply --dry-run of the draft:\n%s", out)
	}

	out = mustRun(t, "", with("recommend", "--scope", `app == "shop"`, "--apply", "--staged")...)
	if !strings.Contains(out, "# revision 1 published (added rules staged)") || !strings.Contains(out, "mode: staged") {
		t.Errorf("recommend --apply --staged:\n%s", out)
	}
	out = mustRun(t, "", with("get", "policy", "recommended-app-shop", "-o", "yaml")...)
	if n := strings.Count(out, "- name:"); n != 3 || strings.Count(out, "mode: staged") != n {
		t.Errorf("published policy:\n%s", out)
	}
	out = mustRun(t, "", with("recommend", "--scope", "app=shop", "--apply", "--staged")...)
	if !strings.Contains(out, "0 added") || !strings.Contains(out, "# no change (revision 1)") {
		t.Errorf("second run:\n%s", out)
	}
	// Staged first, then enforced: a run that is not staged enforces them.
	out = mustRun(t, "", with("recommend", "--scope", "app=shop", "--apply")...)
	if !strings.Contains(out, "0 added") || !strings.Contains(out, "3 staged rules enforced") || !strings.Contains(out, "# revision 2 published") {
		t.Errorf("run without --staged after a staged one:\n%s", out)
	}
	out = mustRun(t, "", with("get", "policy", "recommended-app-shop", "-o", "yaml")...)
	if strings.Count(out, "- name:") != 3 || strings.Contains(out, "mode: staged") {
		t.Errorf("published policy after enforcing:\n%s", out)
	}

	out = mustRun(t, "", with("discover", "apps")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "WORKLOAD") || !strings.Contains(lines[1], "vm-9") ||
		!strings.Contains(lines[1], "shop") || !strings.Contains(lines[1], "db") {
		t.Errorf("discover apps:\n%s", out)
	}
	if _, err := run(t, "", with("discover", "apps", "vm-9")...); err == nil {
		t.Error("workload names without --accept accepted")
	}
	out = mustRun(t, "", with("discover", "apps", "--accept", "vm-9")...)
	if !strings.Contains(out, "tags written on 1 workload(s)") {
		t.Errorf("accept:\n%s", out)
	}
	out = mustRun(t, "", with("get", "workload", "vm-9", "-o", "yaml")...)
	if !strings.Contains(out, "app: shop") || !strings.Contains(out, "tier: db") {
		t.Errorf("vm-9 after accept:\n%s", out)
	}
	out = mustRun(t, "", with("audit", "--object", "Workload/vm-9")...)
	if !strings.Contains(out, "discover.accept") {
		t.Errorf("audit:\n%s", out)
	}
}

func TestScopeExpr(t *testing.T) {
	for in, want := range map[string]string{
		"app=shop":          `app == "shop"`,
		"app=shop,tier=web": `app == "shop" && tier == "web"`,
		`app == "shop"`:     `app == "shop"`,
		"all()":             "all()",
		"has(app)":          "has(app)",
	} {
		if got, err := scopeExpr(in); err != nil || got != want {
			t.Errorf("scopeExpr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := scopeExpr("  "); err == nil {
		t.Error("empty scope accepted")
	}
}
