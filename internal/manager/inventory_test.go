package manager

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/store"
)

// TestImportKeepsAgentBinding: a CMDB row for an address an agent bound
// tags the agent's workload instead of making another or renaming it.
func TestImportKeepsAgentBinding(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	agentWl := &policy.Workload{
		Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "hv1-eth0"}},
		Spec:   policy.WorkloadSpec{IPs: []string{"10.0.0.5"}, Host: "hv1", Interface: "eth0", Facts: map[string]string{"source": "agent"}},
	}
	if _, err := tm.srv.store.Commit(ctx, store.Commit{Author: "agent:hv1", UpsertWorkloads: []*policy.Workload{agentWl}, Audit: []store.AuditEntry{{Action: "discover"}}}); err != nil {
		t.Fatal(err)
	}
	req := api.CMDBImportRequest{File: "x.csv", Content: "name,ip_address,u_application,owned_by\nDB-1,10.0.0.5,shop,alice\n"}
	var ae *apiclient.Error
	if _, err := tm.client(t, api.RoleAuditor).ImportCMDB(ctx, req); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("auditor import: %v, want 403", err)
	}
	c := tm.client(t, api.RoleOperator)
	res, err := c.ImportCMDB(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Created) != 0 || !slices.Equal(res.Updated, []string{"hv1-eth0"}) {
		t.Errorf("result %+v", res)
	}
	wl, err := tm.srv.store.Workload(ctx, "hv1-eth0")
	if err != nil {
		t.Fatal(err)
	}
	if wl.Spec.Tags["app"] != "shop" || wl.Spec.Host != "hv1" || wl.Spec.Facts["source"] != "agent" || wl.Spec.Facts["owner"] != "alice" {
		t.Errorf("agent workload after import: %+v", wl.Spec)
	}
	facts, err := c.WorkloadFacts(ctx, "hv1-eth0")
	if err != nil {
		t.Fatal(err)
	}
	var sawName, sawAgentIP bool
	for _, f := range facts.Facts {
		if f.Attribute == "name" && f.Value == "db-1" && !f.Used && strings.Contains(f.Reason, "bound by an agent") {
			sawName = true
		}
		if f.Attribute == "ip" && f.Kind == "agent" && f.Used && f.Age == "" {
			sawAgentIP = true
		}
	}
	if !sawName || !sawAgentIP {
		t.Errorf("facts %+v", facts.Facts)
	}
	audit, err := tm.srv.store.AuditLog(ctx, store.AuditFilter{Object: "Workload/hv1-eth0", Action: "import"})
	if err != nil || len(audit) != 1 || !strings.Contains(audit[0].Diff, "shop") {
		t.Errorf("audit %+v %v", audit, err)
	}
	if _, err := c.WorkloadFacts(ctx, "nobody"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("facts of an unknown name: %v", err)
	}
	if _, err := c.ImportCMDB(ctx, api.CMDBImportRequest{Content: "host\nx\n"}); !errors.As(err, &ae) || ae.Status != 422 || !strings.Contains(ae.Error(), `no column "name"`) {
		t.Errorf("file without a name column: %v", err)
	}
}

// TestPeriodicSync: a due source is synced and its failure recorded; one
// synced within its interval, or with interval 0, is left alone.
func TestPeriodicSync(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	c := tm.client(t, api.RoleOperator)
	for _, req := range []api.SourceRequest{
		{Name: "down", Kind: "vcenter", URL: "https://127.0.0.1:1/sdk", Interval: "10m"},
		{Name: "manual", Kind: "vcenter", URL: "https://127.0.0.1:1/sdk", Interval: "0"},
	} {
		if _, err := c.CreateSource(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	var ae *apiclient.Error
	for _, bad := range []api.SourceRequest{
		{Name: "down", Kind: "vcenter", URL: "https://x/sdk"},
		{Name: "Bad_Name", Kind: "vcenter", URL: "https://x/sdk"},
		{Name: "c", Kind: "cmdb", URL: "https://x/sdk"},
		{Name: "d", Kind: "vcenter", URL: "http://x/sdk"},
		{Name: "e", Kind: "vcenter", URL: "https://x/sdk", Interval: "5s"},
	} {
		if _, err := c.CreateSource(ctx, bad); !errors.As(err, &ae) || ae.Status/100 != 4 {
			t.Errorf("CreateSource(%+v): %v, want a 4xx", bad, err)
		}
	}
	ss := tm.srv.store.(store.SourceStore)
	tm.srv.syncDueSources(ctx, ss)
	down, _ := ss.Source(ctx, "down")
	if down.LastSync.IsZero() || !strings.Contains(down.LastError, "vcenter down") {
		t.Fatalf("due source after a pass: %+v", down)
	}
	if m, _ := ss.Source(ctx, "manual"); !m.LastSync.IsZero() {
		t.Errorf("interval-0 source was synced: %+v", m)
	}
	tm.srv.syncDueSources(ctx, ss)
	if again, _ := ss.Source(ctx, "down"); !again.LastSync.Equal(down.LastSync) {
		t.Errorf("source synced again within its interval: %v then %v", down.LastSync, again.LastSync)
	}
	srcs, err := tm.client(t, api.RoleAuditor).Sources(ctx)
	if err != nil || len(srcs) != 2 {
		t.Fatalf("sources %+v %v", srcs, err)
	}
	for _, s := range srcs {
		if s.URL == "" || !s.Configured {
			t.Errorf("source %+v", s)
		}
	}
}
