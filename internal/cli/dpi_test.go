package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const captures = "../dpi/testdata/captures/"

func TestDPIRead(t *testing.T) {
	out := mustRun(t, "", "dpi", "read", captures+"tls-versions.pcap")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "PROTO") {
		t.Fatalf("want a header and 4 flows:\n%s", out)
	}
	for i, v := range []string{"1.0", "1.1", "1.2", "1.3"} {
		f := strings.Fields(lines[i+1])
		if f[0] != "tcp" || f[2] != "127.0.0.1:443" || f[3] != "APP_HTTPS" || f[4] != v || f[5] != "www.lab.test" {
			t.Errorf("flow %d: %q", i, lines[i+1])
		}
	}

	out = mustRun(t, "", "dpi", "read", "-o", "json", captures+"unusual-ports.pcapng")
	var flows []dpiFlow
	if err := json.Unmarshal([]byte(out), &flows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	apps := map[string]string{}
	for _, f := range flows {
		apps[f.Server] += f.App + " "
		if f.Packets == 0 || f.Bytes == 0 {
			t.Errorf("%+v: no counters", f)
		}
	}
	if apps["127.0.0.1:443"] != "APP_SSH " || apps["127.0.0.1:5432"] != "APP_HTTP " || apps["127.0.0.1:8080"] != "APP_REDIS " {
		t.Errorf("apps by server: %v", apps)
	}
	var h2 *dpiFlow
	for i := range flows {
		if flows[i].App == "APP_HTTP2" && flows[i].TLSVersion == "1.2" && flows[i].Server == "127.0.0.1:8443" {
			h2 = &flows[i]
		}
	}
	if h2 == nil || h2.ALPN != "h2" || len(h2.JA3) != 32 || len(h2.JA4) != 36 || !strings.HasPrefix(h2.JA3String, "771,") || h2.TLSCipher == "" {
		t.Errorf("h2 over TLS 1.2 flow: %+v", h2)
	}
}

func TestDPIReadErrors(t *testing.T) {
	dir := t.TempDir()
	notCapture := filepath.Join(dir, "notes.txt")
	os.WriteFile(notCapture, []byte("hello, not a capture\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dpi", "read", notCapture}, "notes.txt: dpi: not a pcap or pcapng capture"},
		{[]string{"dpi", "read", filepath.Join(dir, "missing.pcap")}, "no such file"},
		{[]string{"dpi", "read"}, "accepts 1 arg"},
		{[]string{"dpi", "read", "-o", "xml", captures + "dns.pcap"}, "--output"},
	} {
		_, err := run(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
