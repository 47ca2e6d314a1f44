package manager

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// TestStagedRulesCounted: staged rules are not in the kernel; each flow
// record a staged rule would have decided carries that rule, so what a
// staged rule would change is a query away.
func TestStagedRulesCounted(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	op := tm.client(t, api.RoleOperator)
	docs := `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: app}
spec: {ips: [10.1.0.1], host: h1, tags: {tier: app}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db}
spec: {ips: [10.1.0.2], host: h2, tags: {tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  category: Application
  rules:
  - {name: would-block-sql, sources: [10.1.0.1], destinations: [10.1.0.2], services: [tcp/5432], action: drop, mode: staged}
  - {name: allow-all, action: allow}
`
	parsed, err := policy.Decode("p.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Apply(ctx, api.ApplyRequest{Documents: wire(t, parsed)}); err != nil {
		t.Fatal(err)
	}
	rev, err := op.Revision(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	staged, allow := rev.Set.RuleIDs["p/would-block-sql"], rev.Set.RuleIDs["p/allow-all"]
	now := time.Now().UTC()
	rec := func(id string, port uint16) flow.Record {
		return flow.Record{ID: id, Kind: flow.KindEnd, Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.1.0.2"),
			Proto: 6, SrcPort: 40000, DstPort: port, Start: now.Add(-time.Second), End: now, Seen: now, RuleID: allow, Verdict: flow.Allow}
	}
	if err := tm.srv.IngestFlows(ctx, "h1", []flow.Record{rec("sql", 5432), rec("web", 80)}); err != nil {
		t.Fatal(err)
	}
	hits, err := op.Flows(ctx, apiclient.FlowQuery{Staged: staged})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].DstPort != 5432 || hits[0].StagedRuleID != staged || hits[0].RuleID != allow {
		b, _ := json.Marshal(hits)
		t.Fatalf("flows the staged rule %d would decide: %s", staged, b)
	}
	all, err := op.Flows(ctx, apiclient.FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		if f.DstPort == 80 && f.StagedRuleID != 0 {
			t.Errorf("port 80 flow carries staged rule %d", f.StagedRuleID)
		}
	}
}
