package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// shopWorkloads: a tagged three-tier shop plus two workloads nobody
// tagged, a second database and a second API server.
const shopWorkloads = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web-1}
spec: {ips: [10.2.1.1], host: h1, tags: {app: shop, tier: web, env: prod}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web-2}
spec: {ips: [10.2.1.2], host: h1, tags: {app: shop, tier: web, env: prod}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: api-1}
spec: {ips: [10.2.2.1], host: h1, tags: {app: shop, tier: api, env: prod}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db-1}
spec: {ips: [10.2.3.1], host: h1, tags: {app: shop, tier: db, env: prod}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: vm-17}
spec: {ips: [10.2.3.2], host: h1, tags: {owner: ops}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: vm-18}
spec: {ips: [10.2.2.2], host: h1}
`

type conn struct {
	src, dst string
	port     uint16
	n        int
}

var shopTraffic = []conn{
	{"203.0.113.5", "10.2.1.1", 443, 3},
	{"10.2.1.1", "10.2.2.1", 8080, 4},
	{"10.2.1.2", "10.2.2.1", 8080, 4},
	{"10.2.1.1", "10.2.2.2", 8080, 4},
	{"10.2.1.2", "10.2.2.2", 8080, 4},
	{"10.2.2.1", "10.2.3.1", 5432, 4},
	{"10.2.2.1", "10.2.3.2", 5432, 4},
	{"10.2.2.2", "10.2.3.1", 5432, 4},
	{"10.2.2.2", "10.2.3.2", 5432, 4},
}

var nextConn int

// ingest puts the connections into the manager as the agent of h1 would:
// an update, then the end of each.
func ingest(t *testing.T, tm *testManager, conns []conn) {
	t.Helper()
	now := time.Now().UTC()
	var recs []flow.Record
	for _, c := range conns {
		for range c.n {
			nextConn++
			start := now.Add(-time.Duration(nextConn) * time.Second)
			r := flow.Record{ID: fmt.Sprintf("c%d", nextConn), Kind: flow.KindUpdate, Host: "h1",
				Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), Proto: 6,
				SrcPort: uint16(40000 + nextConn), DstPort: c.port, SrcBytes: 100, DstBytes: 200,
				Start: start, Seen: start.Add(time.Millisecond), RuleID: policy.DefaultRuleID, Verdict: flow.Allow}
			end := r
			end.Kind, end.End, end.Seen, end.SrcBytes, end.DstBytes = flow.KindEnd, start.Add(time.Second), start.Add(time.Second), 300, 900
			recs = append(recs, r, end)
		}
	}
	if err := tm.srv.IngestFlows(context.Background(), "h1", recs); err != nil {
		t.Fatal(err)
	}
}

func applyYAML(t *testing.T, c *apiclient.Client, docs string) {
	t.Helper()
	parsed, err := policy.Decode("test.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(context.Background(), api.ApplyRequest{Documents: wire(t, parsed)}); err != nil {
		t.Fatal(err)
	}
}

func TestRecommendApplyStagedThenIncremental(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	op := tm.client(t, api.RoleOperator)
	applyYAML(t, op, shopWorkloads)
	ingest(t, tm, shopTraffic)

	// An auditor may read flows but not recommend (it can apply).
	if _, err := tm.client(t, api.RoleAuditor).Recommend(ctx, api.RecommendRequest{Scope: `app == "shop"`}); !isStatus(err, http.StatusForbidden) {
		t.Errorf("auditor recommend: %v, want 403", err)
	}
	for _, bad := range []api.RecommendRequest{{Scope: ""}, {Scope: "app =="}, {Scope: "all()", Since: "yesterday"}} {
		if _, err := op.Recommend(ctx, bad); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("recommend %+v: %v, want 400", bad, err)
		}
	}

	draft, err := op.Recommend(ctx, api.RecommendRequest{Scope: `app == "shop"`, Since: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	if draft.Revision != 0 || draft.Changes.Incremental || len(draft.Changes.Added) == 0 || draft.Connections != 31 {
		t.Fatalf("draft: revision %d, changes %+v, %d connections", draft.Revision, draft.Changes, draft.Connections)
	}
	// The untagged vm-18 serves the web tier like shop-api: one rule.
	ev, ok := draft.Evidence["allow-shop-web-to-vm-18-shop-api"]
	if !ok || ev.Flows != 16 || ev.Bytes != 16*1200 || len(ev.Examples) == 0 {
		t.Errorf("evidence of web to api: %+v (all: %v)", ev, slices.Collect(mapsKeys(draft.Evidence)))
	}
	// The documents are what apply takes: a dry run accepts them.
	if _, err := op.Apply(ctx, api.ApplyRequest{Documents: draft.Documents, DryRun: true}); err != nil {
		t.Fatalf("apply dry run of the draft: %v", err)
	}

	applied, err := op.Recommend(ctx, api.RecommendRequest{Scope: `app == "shop"`, Apply: true, Staged: true})
	if err != nil {
		t.Fatal(err)
	}
	if applied.Revision != 1 || len(applied.Applied) == 0 {
		t.Fatalf("apply: revision %d, changes %+v", applied.Revision, applied.Applied)
	}
	rev, err := op.Revision(ctx, applied.Revision)
	if err != nil {
		t.Fatal(err)
	}
	p := rev.Set.Policies["recommended-app-shop"]
	if p == nil || len(p.Spec.Rules) < 4 {
		t.Fatalf("published policy %+v", p)
	}
	for _, r := range p.Spec.Rules {
		if r.Mode != policy.ModeStaged {
			t.Errorf("rule %s mode %q, want staged", r.Name, r.Mode)
		}
		if rev.Set.RuleIDs["recommended-app-shop/"+r.Name] == 0 {
			t.Errorf("rule %s has no id", r.Name)
		}
	}
	// Staged, the rules change nothing yet: the default still decides, and
	// the evaluator reports the staged decision.
	got, err := op.Eval(ctx, api.EvalRequest{From: "10.2.1.1", To: "10.2.3.1", Proto: "tcp", Port: 5432})
	if err != nil {
		t.Fatal(err)
	}
	if got.Verdict != "allow" || !strings.HasPrefix(got.StagedRule, "recommended-app-shop/drop-rest") {
		t.Errorf("web to db under the staged draft: %s by %s, staged %q", got.Verdict, got.Rule, got.StagedRule)
	}

	// Nothing new: the second run proposes nothing and publishes nothing.
	again, err := op.Recommend(ctx, api.RecommendRequest{Scope: `app == "shop"`, Apply: true, Staged: true})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Changes.Incremental || len(again.Changes.Added) != 0 || len(again.Changes.Stale) != 0 ||
		len(again.Applied) != 0 || again.Revision != applied.Revision {
		t.Errorf("second run: %+v, applied %+v, revision %d", again.Changes, again.Applied, again.Revision)
	}

	// A new flow: one new rule, nothing else touched.
	ingest(t, tm, []conn{{"10.2.1.1", "10.2.3.1", 5432, 1}})
	third, err := op.Recommend(ctx, api.RecommendRequest{Scope: `app == "shop"`, Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(third.Changes.Added, []string{"allow-shop-web-to-shop-db"}) || third.Revision != applied.Revision+1 ||
		len(third.Applied) != 1 || third.Applied[0].Name != "recommended-app-shop" {
		t.Errorf("third run: %+v, applied %+v, revision %d", third.Changes, third.Applied, third.Revision)
	}
	audit, err := op.Audit(ctx, apiclient.AuditQuery{Object: "Policy/recommended-app-shop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 2 || audit[0].Action != "recommend" {
		b, _ := json.Marshal(audit)
		t.Errorf("audit: %s", b)
	}
}

func TestDiscoverAppsAndAccept(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	op := tm.client(t, api.RoleOperator)
	applyYAML(t, op, shopWorkloads)
	ingest(t, tm, shopTraffic)

	ps, err := tm.client(t, api.RoleAuditor).DiscoverApps(ctx, "1d")
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]api.AppProposal{}
	for _, p := range ps {
		by[p.Workload] = p
	}
	if len(ps) != 2 {
		b, _ := json.MarshalIndent(ps, "", " ")
		t.Fatalf("proposals:\n%s", b)
	}
	if p := by["vm-17"]; p.Tags["app"] != "shop" || p.Tags["tier"] != "db" || p.Confidence <= 0 || !slices.Contains(p.Serves, "tcp/5432") || p.TierFrom == "" {
		t.Errorf("vm-17: %+v", p)
	}
	if p := by["vm-18"]; p.Tags["app"] != "shop" || p.Tags["tier"] != "api" || len(p.Peers) == 0 {
		t.Errorf("vm-18: %+v", p)
	}

	if _, err := op.AcceptApps(ctx, api.AcceptAppsRequest{Workloads: []string{"nosuch"}}); !isStatus(err, http.StatusNotFound) {
		t.Errorf("accept of an unknown workload: %v, want 404", err)
	}
	if _, err := op.AcceptApps(ctx, api.AcceptAppsRequest{}); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("accept of nothing: %v, want 400", err)
	}
	resp, err := op.AcceptApps(ctx, api.AcceptAppsRequest{Workloads: []string{"vm-17", "web-1"}, Since: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Accepted) != 1 || resp.Accepted[0].Workload != "vm-17" || len(resp.Skipped) != 1 || resp.Skipped[0].Workload != "web-1" {
		t.Errorf("accept: %+v", resp)
	}
	raw, err := op.Get(ctx, policy.KindWorkload, "vm-17", 0)
	if err != nil {
		t.Fatal(err)
	}
	var wl policy.Workload
	if err := json.Unmarshal(raw, &wl); err != nil {
		t.Fatal(err)
	}
	if tags := wl.Spec.Tags; tags["app"] != "shop" || tags["tier"] != "db" || tags["owner"] != "ops" {
		t.Errorf("vm-17 tags after accept: %v", tags)
	}
	audit, err := op.Audit(ctx, apiclient.AuditQuery{Object: "Workload/vm-17"})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) == 0 || audit[0].Action != "discover.accept" || audit[0].Actor != "operator-user" {
		b, _ := json.Marshal(audit)
		t.Errorf("audit: %s", b)
	}

	// Once tagged, vm-17 is no longer proposed; accepting all takes vm-18.
	all, err := op.AcceptApps(ctx, api.AcceptAppsRequest{All: true, Since: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Accepted) != 1 || all.Accepted[0].Workload != "vm-18" {
		t.Errorf("accept all: %+v", all)
	}
	if ps, err := op.DiscoverApps(ctx, ""); err != nil || len(ps) != 0 {
		t.Errorf("after accepting all: %d proposals, %v", len(ps), err)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
