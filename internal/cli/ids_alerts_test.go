package cli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
)

// fakeAlerts is a manager that only answers GET /api/v1/ids/alerts with
// records, and records the query it got.
func fakeAlerts(t *testing.T, records []string) (args []string, query func() string) {
	t.Helper()
	var got string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.IDSAlertsPath || r.Header.Get("Authorization") != "Bearer bh_test" {
			http.Error(w, `{"error":"unexpected request"}`, http.StatusNotFound)
			return
		}
		got = r.URL.RawQuery
		// As the manager writes them: an indented array.
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("[\n  " + strings.Join(records, ",\n  ") + "\n]\n"))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	tok := filepath.Join(dir, "token")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	os.WriteFile(tok, []byte("bh_test\n"), 0o600)
	t.Setenv("BULKHEAD_CONFIG", filepath.Join(dir, "cli.yaml"))
	return []string{"--server", srv.URL, "--token-file", tok, "--ca", ca}, func() string { return got }
}

func TestIDSAlertsCommand(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	records := []string{
		`{"timestamp":"2026-03-01T12:00:00.000000+0000","flow_id":42,"event_type":"alert","src_ip":"10.0.0.10","src_port":41000,"dest_ip":"10.0.0.20","dest_port":5432,"proto":"TCP","app_proto":"pgsql",` +
			`"alert":{"action":"blocked","gid":1,"signature_id":2024897,"rev":3,"signature":"ET EXPLOIT lateral movement","category":"Attempted Administrator Privilege Gain","severity":1},` +
			`"bulkhead":{"host":"hv1","src_workload":"web-1","dest_workload":"db-1","profile":"db","mode":"prevent"}}`,
		`{"timestamp":"2026-03-01T11:59:00.000000+0000","event_type":"alert","src_ip":"fd00::66","src_port":40000,"dest_ip":"fd00::10","dest_port":80,"proto":"TCP","app_proto":"http",` +
			`"alert":{"action":"allowed","gid":1,"signature_id":2100498,"rev":7,"signature":"GPL ATTACK_RESPONSE id check returned root","category":"Potentially Bad Traffic","severity":2},` +
			`"http":{"hostname":"www.shop.test","url":"/"},"bulkhead":{"host":"hv2","dest_workload":"web-1"}}`,
	}
	conn, query := fakeAlerts(t, records)
	out := mustRun(t, "", append(conn, "ids", "alerts", "--since", "1h", "--until", "10m", "--severity", "2", "--workload", "web-1",
		"--sid", "2024897", "--host", "hv1", "--limit", "5")...)
	if q := query(); q != "host=hv1&limit=5&severity=2&sid=2024897&since=1h&until=10m&workload=web-1" {
		t.Errorf("query %q", q)
	}
	t.Logf("bulkhead ids alerts:\n%s", out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("output:\n%s", out)
	}
	for i, want := range [][]string{
		{"TIME", "SEVERITY", "ACTION", "SID", "SIGNATURE", "SRC", "DST", "APP", "HOST"},
		{at.Local().Format(time.DateTime), " 1 ", "blocked", "2024897", "ET EXPLOIT lateral movement", "web-1", "db-1", "pgsql", "hv1"},
		{at.Add(-time.Minute).Local().Format(time.DateTime), " 2 ", "allowed", "2100498", "GPL ATTACK_RESPONSE id check returned root",
			"[fd00::66]:40000", "web-1", "http", "hv2"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}

	// eve: one record a line, each exactly the manager's record.
	eve := mustRun(t, "", append(conn, "ids", "alerts", "-o", "eve")...)
	if got := strings.Split(strings.TrimRight(eve, "\n"), "\n"); len(got) != 2 || got[0] != records[0] || got[1] != records[1] {
		t.Errorf("-o eve:\n%s", eve)
	}
	js := mustRun(t, "", append(conn, "ids", "alerts", "-o", "json")...)
	var back []api.EVEAlert
	if err := json.Unmarshal([]byte(js), &back); err != nil || len(back) != 2 || back[1].Bulkhead.DestWorkload != "web-1" {
		t.Errorf("-o json: %v\n%s", err, js)
	}
	if y := mustRun(t, "", append(conn, "ids", "alerts", "-o", "yaml")...); !strings.Contains(y, "signature_id: 2024897") ||
		!strings.Contains(y, "hostname: www.shop.test") {
		t.Errorf("-o yaml:\n%s", y)
	}
	if _, err := run(t, "", append(conn, "ids", "alerts", "-o", "csv")...); err == nil || !strings.Contains(err.Error(), "table, yaml, json or eve") {
		t.Errorf("-o csv: %v", err)
	}
	if _, err := run(t, "", append(conn, "ids", "alerts", "--severity", "-1")...); err == nil || !strings.Contains(err.Error(), "--severity") {
		t.Errorf("--severity -1: %v", err)
	}
}

// TestIDSAlertsEmpty: no alerts is a header, and an empty list as data.
func TestIDSAlertsEmpty(t *testing.T) {
	conn, _ := fakeAlerts(t, nil)
	if out := mustRun(t, "", append(conn, "ids", "alerts")...); strings.TrimSpace(out) != "TIME  SEVERITY  ACTION  SID  SIGNATURE  SRC  DST  APP  HOST" {
		t.Errorf("table:\n%q", out)
	}
	if out := mustRun(t, "", append(conn, "ids", "alerts", "-o", "json")...); strings.TrimSpace(out) != "[]" {
		t.Errorf("json:\n%s", out)
	}
	if out := mustRun(t, "", append(conn, "ids", "alerts", "-o", "eve")...); out != "" {
		t.Errorf("eve:\n%s", out)
	}
}

// TestIDSAlertsFromManager: alerts an agent host sent, through a real
// manager: listed with the workloads the inventory names, and counted in
// the map's ALERTS column.
func TestIDSAlertsFromManager(t *testing.T) {
	conn, srv := startManagerServer(t)
	with := func(args ...string) []string { return append(args, conn...) }
	mustRun(t, "", with("apply", "-f", writeFile(t, "inv.yaml", cliInventory))...)
	now := time.Now().UTC()
	eve := func(at time.Time, sid, sev int, src, dst string) []byte {
		ts := at.Format("2006-01-02T15:04:05.000000-0700")
		return []byte(`{"timestamp":"` + ts + `","event_type":"alert","src_ip":"` + src + `","src_port":40000,"dest_ip":"` + dst +
			`","dest_port":5432,"proto":"TCP","app_proto":"pgsql","alert":{"action":"allowed","gid":1,"signature_id":` +
			strconv.Itoa(sid) + `,"rev":1,"signature":"TEST sid ` + strconv.Itoa(sid) + `","category":"Attempted Information Leak","severity":` +
			strconv.Itoa(sev) + `},"bulkhead":{"host":"forged"}}`)
	}
	n, err := srv.IngestAlerts(context.Background(), "hv1", [][]byte{
		eve(now.Add(-3*time.Minute), 1001, 2, "10.5.9.9", "10.5.3.1"),
		eve(now.Add(-2*time.Minute), 1002, 1, "10.5.9.9", "10.5.3.1"),
		eve(now.Add(-time.Minute), 1003, 3, "203.0.113.9", "10.5.1.1"),
	})
	if err != nil || n != 3 {
		t.Fatalf("ingest: %d, %v", n, err)
	}
	out := mustRun(t, "", with("ids", "alerts", "--workload", "db1", "--severity", "2")...)
	t.Logf("bulkhead ids alerts --workload db1 --severity 2:\n%s", out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !regexpLine(lines[1], " 1 ", "1002", "TEST sid 1002", "attacker", "db1", "pgsql", "hv1") ||
		!regexpLine(lines[2], " 2 ", "1001", "attacker", "db1", "hv1") {
		t.Errorf("alerts:\n%s", out)
	}
	out = mustRun(t, "", with("map", "--level", "app")...)
	t.Logf("bulkhead map --level app:\n%s", out)
	for _, want := range [][]string{
		{"3 IDS alerts"},
		{"FROM", "TO", "CONNECTIONS", "BLOCKED", "ALERTS"},
		{"dev/ci", "prod/shop", "0", "0", "2"},
		{"external:internet", "prod/shop", "0", "0", "1"},
		{"APP", "MEMBERS", "PROPOSED", "CONNECTIONS", "BLOCKED", "ALERTS"},
		{"prod/shop", "2", "0", "0", "0", "3"},
	} {
		if !regexpLine(out, want...) {
			t.Errorf("map lacks a line with %q:\n%s", want, out)
		}
	}
}
