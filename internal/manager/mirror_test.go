package manager

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/store"
)

// TestMirrorRecords: a connection between workloads of two agent hosts is
// reported by both; the source's host has the primary record, the other a
// mirror, and the analyses count the connection once.
func TestMirrorRecords(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	op := tm.client(t, api.RoleOperator)
	docs := `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web}
spec: {ips: [10.1.0.1], host: h1, tags: {app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db}
spec: {ips: [10.1.0.2], host: h2, tags: {app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: lonely}
spec: {ips: [10.1.0.3], host: h3, tags: {app: shop, tier: db}}
`
	parsed, err := policy.Decode("w.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Apply(ctx, api.ApplyRequest{Documents: wire(t, parsed)}); err != nil {
		t.Fatal(err)
	}
	// h1 and h2 run agents; h3 does not.
	for _, h := range []string{"h1", "h2"} {
		secret, _, err := tm.srv.store.CreateBootstrapToken(ctx, h, "test", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.srv.store.EnrollHost(ctx, secret, store.Host{Name: h, CertSerial: h, CertFingerprint: h}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	rec := func(id, dst string) flow.Record {
		return flow.Record{ID: id, Kind: flow.KindEnd, Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr(dst),
			Proto: 6, SrcPort: 40000, DstPort: 5432, SrcPackets: 10, DstPackets: 10, Start: now.Add(-time.Second), End: now, Seen: now,
			RuleID: 1, Verdict: flow.Allow}
	}
	// web -> db crosses h1 and h2: both report it. web -> lonely crosses h1
	// and h3, which has no agent: h1's record is the only one.
	if err := tm.srv.IngestFlows(ctx, "h1", []flow.Record{rec("c1", "10.1.0.2"), rec("c2", "10.1.0.3")}); err != nil {
		t.Fatal(err)
	}
	if err := tm.srv.IngestFlows(ctx, "h2", []flow.Record{rec("c1", "10.1.0.2")}); err != nil {
		t.Fatal(err)
	}
	// A record from the destination's host when the source is no workload
	// is primary there.
	in := rec("c3", "10.1.0.2")
	in.Src = netip.MustParseAddr("192.0.2.9")
	if err := tm.srv.IngestFlows(ctx, "h2", []flow.Record{in}); err != nil {
		t.Fatal(err)
	}
	au := tm.client(t, api.RoleAuditor)
	fl, err := au.Flows(ctx, apiclient.FlowQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	mirrors := map[string]bool{}
	for _, f := range fl {
		mirrors[f.ID] = f.Mirror
	}
	want := map[string]bool{"h1/c1": false, "h2/c1": true, "h1/c2": false, "h2/c3": false}
	if len(mirrors) != len(want) {
		t.Fatalf("flows %v, want %v", mirrors, want)
	}
	for id, m := range want {
		if mirrors[id] != m {
			t.Errorf("record %s: mirror %v, want %v", id, mirrors[id], m)
		}
	}
	comp, err := au.Compliance(ctx, apiclient.AnalysisQuery{Level: "workload"})
	if err != nil {
		t.Fatal(err)
	}
	if comp.Total.Total != 3 {
		t.Errorf("compliance counts %d flows, want 3 connections (the mirror once)", comp.Total.Total)
	}
}
