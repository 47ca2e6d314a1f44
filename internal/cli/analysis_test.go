package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/flow"
)

const cliInventory = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web1}
spec: {ips: [10.5.1.1], tags: {env: prod, app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db1}
spec: {ips: [10.5.3.1], tags: {env: prod, app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: attacker}
spec: {ips: [10.5.9.9], tags: {env: dev, app: ci, tier: build}}
---
apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: https}
spec: {ports: [tcp/443]}
`

// cliPolicy closes the lab-like shop: web and db allowed, the attacker
// quarantined, everything else dropped by the default.
const cliPolicy = `apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: shop}
spec:
  category: Application
  rules:
  - {name: web, destinations: [10.5.1.1], services: [https], action: allow}
  - {name: db, sources: [10.5.1.1], destinations: [10.5.3.1], services: [tcp/5432], action: allow}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: quarantine}
spec:
  category: Emergency
  rules:
  - {name: ci, sources: [10.5.9.9], action: drop}
---
apiVersion: bulkhead.io/v1
kind: DefaultRule
metadata: {name: default}
spec: {action: drop}
`

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMapComplianceWhatIfCommands(t *testing.T) {
	conn, srv := startManagerServer(t)
	with := func(args ...string) []string { return append(args, conn...) }
	mustRun(t, "", with("apply", "-f", writeFile(t, "inv.yaml", cliInventory))...)

	now := time.Now().UTC()
	var recs []flow.Record
	add := func(src, dst string, port uint16, n int) {
		for range n {
			start := now.Add(-time.Duration(len(recs)+1) * time.Minute)
			recs = append(recs, flow.Record{ID: fmt.Sprintf("c%d", len(recs)), Kind: flow.KindEnd,
				Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 6, SrcPort: 50000, DstPort: port,
				SrcBytes: 1000, SrcPackets: 10, DstBytes: 9000, DstPackets: 12,
				Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second), RuleID: 1, Verdict: flow.Allow})
		}
	}
	add("198.51.100.20", "10.5.1.1", 443, 6)
	add("10.5.1.1", "10.5.3.1", 5432, 3)
	add("10.5.9.9", "10.5.3.1", 5432, 1)
	if err := srv.IngestFlows(context.Background(), "hv1", recs); err != nil {
		t.Fatal(err)
	}

	// Before the policy: all amber.
	out := mustRun(t, "", with("compliance")...)
	t.Logf("bulkhead compliance (before):\n%s", out)
	if !strings.Contains(out, "TOTAL") || !regexpLine(out, "TOTAL", "0", "10 (100%)", "0", "0", "10") {
		t.Errorf("compliance before the policy:\n%s", out)
	}

	mustRun(t, "", with("apply", "-f", writeFile(t, "policy.yaml", cliPolicy))...)
	out = mustRun(t, "", with("compliance", "--level", "app")...)
	t.Logf("bulkhead compliance (after):\n%s", out)
	for _, want := range [][]string{
		{"APP", "GREEN", "AMBER", "RED", "DASHED", "FLOWS"},
		{"prod/shop", "9 (90%)", "0", "1 (10%)", "0", "10"},
		{"dev/ci", "0", "0", "1 (100%)", "0", "1"},
		{"TOTAL", "9 (90%)", "0", "1 (10%)", "0", "10"},
		{"external:internet", "prod/shop", "6 (100%)"},
		{"dev/ci", "prod/shop", "0", "0", "1 (100%)"},
	} {
		if !regexpLine(out, want...) {
			t.Errorf("compliance lacks a line with %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "against revision 2") {
		t.Errorf("compliance does not name the revision:\n%s", out)
	}

	out = mustRun(t, "", with("map", "--level", "app", "--since", "24h")...)
	t.Logf("bulkhead map:\n%s", out)
	for _, want := range [][]string{
		{"FROM", "TO", "CONNECTIONS", "BLOCKED", "SENT", "RECEIVED", "SERVICES", "FIRST SEEN", "LAST SEEN"},
		{"external:internet", "prod/shop", "6", "0", "6.0kB", "54.0kB", "tcp/443(6)"},
		{"prod/shop", "prod/shop", "3", "tcp/5432(3)"},
		{"APP", "MEMBERS", "PROPOSED", "CONNECTIONS"},
		{"prod/shop", "2", "0", "10"},
	} {
		if !regexpLine(out, want...) {
			t.Errorf("map lacks a line with %q:\n%s", want, out)
		}
	}
	var m api.MapResponse
	if err := json.Unmarshal([]byte(mustRun(t, "", with("map", "--level", "workload", "-o", "json")...)), &m); err != nil {
		t.Fatal(err)
	}
	if m.Level != "workload" || len(m.Edges) != 3 || m.Edges[0].From != "198.51.100.20" || m.Edges[0].Compliance.Green != 6 {
		t.Errorf("map -o json: %+v", m)
	}
	if y := mustRun(t, "", with("compliance", "-o", "yaml")...); !strings.Contains(y, "green: 9") {
		t.Errorf("compliance -o yaml:\n%s", y)
	}

	// A draft that stops the web tier reaching the database.
	draft := strings.Replace(cliPolicy, "destinations: [10.5.3.1], services: [tcp/5432], action: allow", "destinations: [10.5.3.1], services: [tcp/5433], action: allow", 1)
	out = mustRun(t, "", with("whatif", "-f", writeFile(t, "draft.yaml", draft))...)
	t.Logf("bulkhead whatif:\n%s", out)
	if !strings.HasPrefix(out, "this draft would have dropped 3 flows and newly allowed 0, of 10 replayed") ||
		!regexpLine(out, "drop", "web1 10.5.1.1", "db1 10.5.3.1", "tcp/5432", "3", "allow by shop/db", "drop by default (1)") ||
		!regexpLine(out, "prod/shop", "prod/shop", "3", "0") {
		t.Errorf("whatif:\n%s", out)
	}
	out = mustRun(t, "", with("whatif", "--revision", "1", "--level", "workload")...)
	t.Logf("bulkhead whatif --revision 1:\n%s", out)
	if !strings.HasPrefix(out, "revision 1 would have dropped 0 flows and newly allowed 1") || !regexpLine(out, "allow", "attacker 10.5.9.9", "drop by quarantine/ci") {
		t.Errorf("whatif --revision 1:\n%s", out)
	}
	out = mustRun(t, "", with("whatif", "-f", writeFile(t, "same.yaml", cliPolicy))...)
	if !strings.HasPrefix(out, "this draft would have dropped 0 flows and newly allowed 0, of 10 replayed") {
		t.Errorf("whatif with the published policy:\n%s", out)
	}

	// Errors.
	bad := writeFile(t, "bad.yaml", "apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  category: Application\n  rules:\n  - {name: r, sources: [nosuch], action: allow}\n")
	if out, err := run(t, "", with("whatif", "-f", bad)...); err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("whatif with a bad draft: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"whatif"}, {"whatif", "-f", bad, "--revision", "1"}} {
		if _, err := run(t, "", with(args...)...); err == nil || !strings.Contains(err.Error(), "one of them") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := run(t, "", with("map", "--level", "rack")...); err == nil || !strings.Contains(err.Error(), "env, app, tier or workload") {
		t.Errorf("map --level rack: %v", err)
	}
	if _, err := run(t, "", with("compliance", "--since", "last week")...); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("compliance --since 'last week': %v", err)
	}
}

// regexpLine reports whether a line of out holds every field, in order,
// separated by whitespace.
func regexpLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, f := range fields {
			i := strings.Index(rest, f)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(f):]
		}
		if ok {
			return true
		}
	}
	return false
}
