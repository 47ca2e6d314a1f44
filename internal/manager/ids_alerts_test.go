package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

const alertWorkloads = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web}
spec: {ips: [10.0.0.10], tags: {app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db}
spec: {ips: [10.0.0.20], tags: {app: shop, tier: db}}
`

// eveAlert is an EVE alert record as an agent's IDS writes it.
func eveAlert(at time.Time, sid uint32, sev int, src, dst string, bulkhead string) []byte {
	return fmt.Appendf(nil, `{"timestamp":%q,"flow_id":1311768467463790320,"in_iface":"bhwweb","event_type":"alert",`+
		`"src_ip":%q,"src_port":41000,"dest_ip":%q,"dest_port":80,"proto":"TCP","app_proto":"http",`+
		`"alert":{"action":"allowed","gid":1,"signature_id":%d,"rev":2,"signature":"TEST attack %d","category":"Web Application Attack","severity":%d},`+
		`"http":{"hostname":"www.shop.test","url":"/cgi-bin/../../etc/passwd","http_method":"GET"},`+
		`"flow":{"pkts_toserver":3,"pkts_toclient":1,"bytes_toserver":400,"bytes_toclient":60,"start":%q},`+
		`"bulkhead":%s}`,
		at.Format("2006-01-02T15:04:05.000000-0700"), src, dst, sid, sid, sev, at.Format("2006-01-02T15:04:05.000000-0700"), bulkhead)
}

// startAgent runs a real agent enrolled as host against tm.
func startAgent(t *testing.T, tm *testManager, host string) *agent.Agent {
	t.Helper()
	ctx := context.Background()
	tok, err := tm.client(t, api.RoleAdmin).CreateBootstrapToken(ctx, api.BootstrapTokenRequest{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	enf := &recordingEnforcer{applied: make(chan int64, 100)}
	a, err := agent.New(agent.Config{
		Manager: tm.srv.AgentAddr(), BootstrapToken: tok.Secret, CAFingerprint: tok.CAFingerprint,
		StateDir: t.TempDir(), HostName: host, IfacePattern: "bhtestnomatch*",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		HeartbeatTimeout: 2 * time.Second, FlowInterval: 20 * time.Millisecond,
	}, enf, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() { stop(); <-done })
	select {
	case <-enf.applied:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent never received its desired state")
	}
	return a
}

func waitAlerts(t *testing.T, c *apiclient.Client, n int) []json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.IDSAlerts(context.Background(), apiclient.AlertQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d alerts in GET /ids/alerts, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentAlertsToAPI follows IDS alerts from a real agent's SendAlert
// over the agent channel into flows.db, and out of GET /ids/alerts and
// GET /map: the host is the certificate's, the workloads the inventory's,
// the rest of each record as the agent wrote it.
func TestAgentAlertsToAPI(t *testing.T) {
	tm := startManagerWithAgents(t)
	ctx := context.Background()
	applyYAML(t, tm.client(t, api.RoleOperator), alertWorkloads)
	a := startAgent(t, tm, "hv-1")

	now := time.Now().Truncate(time.Microsecond)
	attack := eveAlert(now.Add(-2*time.Second), 2100498, 2, "203.0.113.66", "10.0.0.10", `{"host":"spoofed","interface":"bhwweb","profile":"web","mode":"detect"}`)
	// The agent named its own end; the manager names the other.
	lateral := eveAlert(now.Add(-time.Second), 2024897, 1, "10.0.0.10", "10.0.0.20", `{"src_workload":"web","mode":"prevent"}`)
	a.SendAlert(attack)
	a.SendAlert([]byte(`not json`))
	a.SendAlert([]byte(`{"timestamp":"2026-03-01T12:00:00.000000+0000","event_type":"flow","src_ip":"10.0.0.1","dest_ip":"10.0.0.2"}`))
	a.SendAlert(lateral)

	auditor := tm.client(t, api.RoleAuditor)
	got := waitAlerts(t, auditor, 2)
	if len(got) != 2 {
		t.Fatalf("%d alerts, want 2 (the malformed ones skipped)", len(got))
	}
	var evs []api.EVEAlert
	for _, raw := range got {
		var ev api.EVEAlert
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	// Newest first.
	if evs[0].Alert.SignatureID != 2024897 || evs[1].Alert.SignatureID != 2100498 {
		t.Fatalf("order: %d, %d", evs[0].Alert.SignatureID, evs[1].Alert.SignatureID)
	}
	want := []api.EVEBulkhead{
		{Host: "hv-1", SrcWorkload: "web", DestWorkload: "db", Mode: "prevent"},
		{Host: "hv-1", DestWorkload: "web", Interface: "bhwweb", Profile: "web", Mode: "detect"},
	}
	for i := range evs {
		if evs[i].Bulkhead != want[i] {
			t.Errorf("alert %d bulkhead %+v, want %+v", i, evs[i].Bulkhead, want[i])
		}
	}
	// Everything else is the agent's record, in its order.
	var before, after map[string]any
	json.Unmarshal(attack, &before)
	json.Unmarshal(got[1], &after)
	delete(before, "bulkhead")
	delete(after, "bulkhead")
	b, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	if string(b) != string(aj) {
		t.Errorf("record changed beyond bulkhead:\n got %s\nwant %s", aj, b)
	}
	var compact bytes.Buffer
	json.Compact(&compact, got[1])
	if !strings.HasPrefix(compact.String(), `{"timestamp":`) || !strings.HasSuffix(compact.String(), `"mode":"detect","profile":"web"}}`) {
		t.Errorf("member order not kept: %s", compact.String())
	}

	for _, tc := range []struct {
		q    apiclient.AlertQuery
		want []uint32
	}{
		{apiclient.AlertQuery{Severity: 1}, []uint32{2024897}},
		{apiclient.AlertQuery{Severity: 2}, []uint32{2024897, 2100498}},
		{apiclient.AlertQuery{Workload: "db"}, []uint32{2024897}},
		{apiclient.AlertQuery{Workload: "web"}, []uint32{2024897, 2100498}},
		{apiclient.AlertQuery{SID: 2100498}, []uint32{2100498}},
		{apiclient.AlertQuery{Host: "hv-1", Limit: 1}, []uint32{2024897}},
		{apiclient.AlertQuery{Host: "spoofed"}, nil},
		{apiclient.AlertQuery{Since: "1500ms"}, []uint32{2024897}},
		{apiclient.AlertQuery{Until: now.Add(-1500 * time.Millisecond).Format(time.RFC3339Nano)}, []uint32{2100498}},
	} {
		raws, err := auditor.IDSAlerts(ctx, tc.q)
		if err != nil {
			t.Fatalf("%+v: %v", tc.q, err)
		}
		var sids []uint32
		for _, raw := range raws {
			var ev api.EVEAlert
			json.Unmarshal(raw, &ev)
			sids = append(sids, ev.Alert.SignatureID)
		}
		if fmt.Sprint(sids) != fmt.Sprint(tc.want) {
			t.Errorf("%+v: sids %v, want %v", tc.q, sids, tc.want)
		}
	}
	for _, bad := range []string{"severity=0", "severity=x", "sid=0", "limit=0", "since=yesterday"} {
		_, err := auditor.Raw(ctx, api.IDSAlertsPath+"?"+bad)
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(err.Error(), strings.Split(bad, "=")[0]) {
			t.Errorf("?%s: %v, want 400 naming the parameter", bad, err)
		}
	}

	raw, err := auditor.Raw(ctx, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`bulkhead_ids_alerts_total{severity="1"} 1`,
		`bulkhead_ids_alerts_total{severity="2"} 1`,
		`bulkhead_ids_alerts_malformed_total 2`,
		`bulkhead_ids_alerts_dropped_by_agents_total 0`,
	} {
		if !strings.Contains(string(raw), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	// A batch the agent resends (its answer lost) is stored once, even
	// when the inventory changed in between and the completed records
	// differ.
	applyYAML(t, tm.client(t, api.RoleOperator), strings.Replace(alertWorkloads, "10.0.0.20", "10.0.0.21", 1))
	if n, err := tm.srv.IngestAlerts(ctx, "hv-1", [][]byte{attack, lateral}); err != nil || n != 2 {
		t.Fatalf("resend: %d, %v", n, err)
	}
	if got, err := auditor.IDSAlerts(ctx, apiclient.AlertQuery{}); err != nil || len(got) != 2 {
		t.Errorf("after a resend: %d alerts, %v; want 2", len(got), err)
	}

	// The map counts them between the ends' nodes, like connections.
	m, err := auditor.Map(ctx, apiclient.AnalysisQuery{Level: "tier"})
	if err != nil {
		t.Fatal(err)
	}
	edges := map[string]uint64{}
	for _, e := range m.Edges {
		edges[e.From+" -> "+e.To] = e.Alerts
	}
	if edges["external:internet -> shop/web"] != 1 || edges["shop/web -> shop/db"] != 1 || m.Alerts != 2 {
		t.Errorf("map alerts: edges %v, total %d", edges, m.Alerts)
	}
	for _, n := range m.Nodes {
		if n.ID == "shop/web" && n.Alerts != 2 {
			t.Errorf("node shop/web: %d alerts, want 2", n.Alerts)
		}
	}

	if st := a.AlertStats(); st.Delivered != 4 || st.Waiting != 0 || st.Dropped != 0 {
		t.Errorf("agent alert stats %+v", st)
	}
}

// TestCompleteAlert: what the sink refuses, and what it repairs.
func TestCompleteAlert(t *testing.T) {
	web := netip.MustParseAddr("10.0.0.10")
	wl := func(a netip.Addr) string {
		if a == web {
			return "web"
		}
		return ""
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		name, raw, err string
	}{
		{"not json", `{"event_type":`, "unexpected end"},
		{"not an object", `[1]`, "cannot unmarshal array"},
		{"other event", `{"event_type":"flow"}`, `event_type "flow"`},
		{"no sid", `{"event_type":"alert","alert":{}}`, "signature_id missing"},
		{"bad time", `{"event_type":"alert","timestamp":"yesterday","alert":{"signature_id":1}}`, `timestamp "yesterday"`},
		{"bad address", `{"event_type":"alert","timestamp":"2026-03-01T12:00:00Z","src_ip":"10.0.0.300","dest_ip":"10.0.0.1","alert":{"signature_id":1}}`, `src_ip "10.0.0.300"`},
		{"trailing data", `{"event_type":"alert","timestamp":"2026-03-01T12:00:00Z","src_ip":"10.0.0.3","dest_ip":"10.0.0.1","alert":{"signature_id":1}} {}`, "invalid character"},
	} {
		if _, err := completeAlert([]byte(tc.raw), "h", wl); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.err)
		}
	}
	// No bulkhead object: one is added, last; Suricata's time zone form
	// and RFC 3339 both read; a missing severity is Suricata's default.
	a, err := completeAlert([]byte(`{"timestamp":"2026-03-01T13:00:00.123456+0100","event_type":"alert","src_ip":"10.0.0.10","dest_ip":"::ffff:198.51.100.1","alert":{"signature_id":7}}`), "h", wl)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Time.Equal(at) || a.Severity != defaultSeverity || a.SrcWorkload != "web" || a.DstWorkload != "" ||
		a.Dst != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("alert %+v", a)
	}
	if want := `{"timestamp":"2026-03-01T13:00:00.123456+0100","event_type":"alert","src_ip":"10.0.0.10","dest_ip":"::ffff:198.51.100.1","alert":{"signature_id":7},"bulkhead":{"host":"h","src_workload":"web"}}`; string(a.EVE) != want {
		t.Errorf("EVE\n got %s\nwant %s", a.EVE, want)
	}
	// A bulkhead object's unknown members survive; null is no object.
	a, err = completeAlert([]byte(`{"timestamp":"2026-03-01T12:00:00.123456Z","event_type":"alert","src_ip":"10.0.0.1","dest_ip":"10.0.0.10","alert":{"signature_id":7,"severity":1},"bulkhead":{"zone":"dmz","host":"evil"}}`), "h", wl)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Time.Equal(at) || !strings.HasSuffix(string(a.EVE), `"bulkhead":{"dest_workload":"web","host":"h","zone":"dmz"}}`) {
		t.Errorf("alert %v %s", a.Time, a.EVE)
	}
	if _, err := completeAlert([]byte(`{"timestamp":"2026-03-01T12:00:00Z","event_type":"alert","src_ip":"10.0.0.1","dest_ip":"10.0.0.10","alert":{"signature_id":7},"bulkhead":null}`), "h", wl); err != nil {
		t.Errorf("bulkhead null: %v", err)
	}
}

// FuzzCompleteAlert: whatever an agent sends, the sink answers with an
// error or a record whose stored EVE is valid JSON naming the sender.
func FuzzCompleteAlert(f *testing.F) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Add(eveAlert(at, 1, 1, "10.0.0.1", "10.0.0.2", `{}`))
	f.Add(eveAlert(at, 2, 3, "fd00::1", "10.0.0.2", `{"host":"x","src_workload":"w"}`))
	f.Add([]byte(`{"event_type":"alert","alert":{"signature_id":1},"timestamp":"2026-03-01T12:00:00Z","src_ip":"1.2.3.4","dest_ip":"1.2.3.5","bulkhead":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := completeAlert(raw, "h", func(netip.Addr) string { return "w" })
		if err != nil {
			return
		}
		var ev api.EVEAlert
		if err := json.Unmarshal(a.EVE, &ev); err != nil {
			t.Fatalf("stored EVE is not JSON: %v\n%s", err, a.EVE)
		}
		if ev.Bulkhead.Host != "h" || ev.Alert.SignatureID != a.SID {
			t.Fatalf("stored EVE %s for %+v", a.EVE, a)
		}
	})
}
