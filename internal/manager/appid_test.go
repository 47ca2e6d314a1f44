package manager

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
)

// TestFlowApps: records with what the agents' L7 readers learned (AppID,
// TLS version, server name) are stored, listed, selected with ?app=,
// shown per service on the map, and make the recommendation's rules
// AppID-based.
func TestFlowApps(t *testing.T) {
	tm := startManager(t)
	c := tm.client(t, api.RoleAdmin)
	ctx := context.Background()
	applyText(t, c, analysisInventory)

	now := time.Now().UTC()
	rec := func(id string, src, dst string, port uint16, app, tlsv, server string) flow.Record {
		start := now.Add(-time.Minute)
		return flow.Record{ID: id, Kind: flow.KindEnd,
			Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 6, SrcPort: 40000, DstPort: port,
			SrcBytes: 300, SrcPackets: 5, DstBytes: 3000, DstPackets: 6,
			Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second), RuleID: 1, Verdict: flow.Allow,
			App: app, TLSVersion: tlsv, ServerName: server}
	}
	recs := []flow.Record{
		rec("a1", "203.0.113.5", "10.7.1.1", 443, "APP_HTTPS", "1.3", "shop.example.com"),
		rec("a2", "203.0.113.6", "10.7.1.1", 443, "APP_HTTPS", "1.2", "shop.example.com"),
		rec("a3", "10.7.1.1", "10.7.2.1", 22, "APP_SSH", "", ""),
		rec("a4", "10.7.1.1", "10.7.2.1", 8080, "", "", ""), // not inspected
	}
	if err := tm.srv.IngestFlows(ctx, "h1", recs); err != nil {
		t.Fatal(err)
	}

	https, err := c.Flows(ctx, apiclient.FlowQuery{App: "APP_HTTPS"})
	if err != nil {
		t.Fatal(err)
	}
	if len(https) != 2 {
		t.Fatalf("?app=APP_HTTPS: %d flows, want 2: %+v", len(https), https)
	}
	for _, f := range https {
		if f.App != "APP_HTTPS" || f.ServerName != "shop.example.com" || (f.TLSVersion != "1.3" && f.TLSVersion != "1.2") {
			t.Errorf("flow %+v: want APP_HTTPS with its TLS version and server name", f)
		}
	}
	if ssh, err := c.Flows(ctx, apiclient.FlowQuery{App: "APP_SSH"}); err != nil || len(ssh) != 1 || ssh[0].DstPort != 22 {
		t.Errorf("?app=APP_SSH: %+v, %v", ssh, err)
	}
	var ae *apiclient.Error
	if _, err := c.Flows(ctx, apiclient.FlowQuery{App: "SSH"}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Body.Error, "APP_SSH") {
		t.Errorf("?app=SSH: %v, want 400 naming the AppIDs", err)
	}

	m, err := c.Map(ctx, apiclient.AnalysisQuery{Level: "workload"})
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range findEdge(t, m.Edges, "web1", "api1").Services {
		services = append(services, s.Service)
	}
	if got := strings.Join(services, ","); !strings.Contains(got, "tcp/22 APP_SSH") || !strings.Contains(got, "tcp/8080") {
		t.Errorf("web1 -> api1 services %q, want tcp/22 APP_SSH and tcp/8080", got)
	}

	rr, err := c.Recommend(ctx, api.RecommendRequest{Scope: `app == "shop"`})
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, d := range rr.Documents {
		all.WriteString(strings.Join(strings.Fields(string(d.Object)), ""))
	}
	for _, want := range []string{`"kind":"ContextProfile"`, `"name":"APP_SSH"`, `"name":"APP_HTTPS"`, `"profiles":["app-ssh"]`} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("recommendation lacks %s:\n%s", want, all.String())
		}
	}
}
