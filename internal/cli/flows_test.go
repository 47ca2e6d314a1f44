package cli

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
)

// fakeFlows is a manager that only answers GET /api/v1/flows, and records
// the query it got.
func fakeFlows(t *testing.T, flows []api.Flow) (args []string, query func() string) {
	t.Helper()
	var got string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.Prefix+"/flows" || r.Header.Get("Authorization") != "Bearer bh_test" {
			http.Error(w, `{"error":"unexpected request"}`, http.StatusNotFound)
			return
		}
		got = r.URL.RawQuery
		json.NewEncoder(w).Encode(flows)
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

func TestFlowsCommand(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	end := start.Add(90 * time.Second)
	u8 := func(v uint8) *uint8 { return &v }
	flows := []api.Flow{
		{ID: "h/d", Kind: "drop", Src: "10.9.9.9", Dst: "10.0.1.1", DstWorkload: "db-1", Proto: "tcp", DstPort: 5432,
			SrcBytes: 2400, SrcPackets: 40, Start: start, End: &end, Seen: end, RuleID: 99, Verdict: "drop"},
		{ID: "h/c", Kind: "end", Src: "fd00::1", Dst: "10.0.1.1", SrcWorkload: "web-1", DstWorkload: "db-1", Proto: "tcp", SrcPort: 40000, DstPort: 5432,
			SrcBytes: 1_234_567, SrcPackets: 900, DstBytes: 512, DstPackets: 8, Start: start, End: &end, Seen: end, RuleID: 120, Verdict: "allow"},
		{ID: "h/o", Kind: "update", Src: "10.0.0.1", Dst: "10.0.0.2", Proto: "icmp", ICMPType: u8(8), ICMPCode: u8(0),
			SrcBytes: 84, SrcPackets: 1, DstBytes: 84, DstPackets: 1, Start: start, Seen: start.Add(1500 * time.Millisecond), RuleID: 121, Verdict: "allow"},
	}
	conn, query := fakeFlows(t, flows)
	out := mustRun(t, "", append(conn, "flows", "--from", "web-1", "--to", "10.0.1.0/24", "--verdict", "drop", "--rule", "99", "--since", "10m", "--proto", "tcp", "--port", "5432", "--limit", "5")...)
	if q := query(); q != "from=web-1&limit=5&port=5432&proto=tcp&rule=99&since=10m&to=10.0.1.0%2F24&verdict=drop" {
		t.Errorf("query %q", q)
	}
	t.Logf("bulkhead flows:\n%s", out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("output:\n%s", out)
	}
	for i, want := range [][]string{
		{"TIME", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "RULE", "SENT", "RECEIVED", "DURATION"},
		{"10.9.9.9:*", "db-1 10.0.1.1:5432", "tcp", "drop", "99", "2.4kB/40", "-", "1m30s"},
		{"web-1 [fd00::1]:40000", "db-1 10.0.1.1:5432", "allow", "120", "1.2MB/900", "512B/8", "1m30s"},
		{"10.0.0.1", "10.0.0.2", "icmp 8/0", "allow", "121", "84B/1", "84B/1", "1.5s+"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	if !strings.HasPrefix(lines[1], end.Format(time.DateTime)) {
		t.Errorf("line 1 does not start with the time seen: %q", lines[1])
	}

	js := mustRun(t, "", append(conn, "flows", "-o", "json")...)
	var back []api.Flow
	if err := json.Unmarshal([]byte(js), &back); err != nil || len(back) != 3 || back[1].SrcBytes != 1_234_567 {
		t.Errorf("json output: %v\n%s", err, js)
	}
	if query() != "limit=100" {
		t.Errorf("default query %q", query())
	}
	if y := mustRun(t, "", append(conn, "flows", "-o", "yaml")...); !strings.Contains(y, "srcWorkload: web-1") {
		t.Errorf("yaml output:\n%s", y)
	}
	if _, err := run(t, "", append(conn, "flows", "--port", "70000")...); err == nil {
		t.Error("--port 70000 accepted")
	}
}

// TestFlowsApp: --app goes to the manager, and the APP, TLS and SERVER
// columns appear only when some record carries them, "-" where one lacks.
func TestFlowsApp(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	flows := []api.Flow{
		{ID: "h/a", Kind: "update", Src: "10.0.0.1", Dst: "10.0.0.2", SrcPort: 40000, DstPort: 443, Proto: "tcp",
			Start: start, Seen: start, RuleID: 7, Verdict: "allow", App: "APP_HTTPS", TLSVersion: "1.3", ServerName: "shop.lab.test"},
		{ID: "h/b", Kind: "update", Src: "10.0.0.1", Dst: "10.0.0.3", SrcPort: 40001, DstPort: 22, Proto: "tcp",
			Start: start, Seen: start, RuleID: 8, Verdict: "allow", App: "APP_SSH"},
		{ID: "h/c", Kind: "update", Src: "10.0.0.1", Dst: "10.0.0.4", SrcPort: 40002, DstPort: 5432, Proto: "tcp",
			Start: start, Seen: start, RuleID: 9, Verdict: "allow"},
	}
	conn, query := fakeFlows(t, flows)
	out := mustRun(t, "", append(conn, "flows", "--app", "APP_SSH")...)
	if q := query(); q != "app=APP_SSH&limit=100" {
		t.Errorf("query %q", q)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("output:\n%s", out)
	}
	for i, want := range [][]string{
		{"PROTO", "APP", "TLS", "SERVER", "VERDICT"},
		{"tcp", "APP_HTTPS", "1.3", "shop.lab.test", "allow"},
		{"tcp  APP_SSH", "-"},
		{"tcp  -", "-"},
	} {
		for _, w := range want {
			if !strings.Contains(strings.Join(strings.Fields(lines[i]), "  "), w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}

	conn, _ = fakeFlows(t, flows[2:])
	if out := mustRun(t, "", append(conn, "flows")...); strings.Contains(out, "APP") || strings.Contains(out, "SERVER") {
		t.Errorf("APP/SERVER columns without any inspected flow:\n%s", out)
	}
}
