package cli

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/api"
)

// cliTestRules are written for this test.
const cliTestRules = `alert http $EXTERNAL_NET any -> $HTTP_SERVERS $HTTP_PORTS (msg:"TEST web path traversal"; flow:established,to_server; http.uri; content:"/etc/passwd"; classtype:web-application-attack; metadata:attack_target Web_Server; sid:1001; rev:1;)
alert tcp $EXTERNAL_NET any -> $SQL_SERVERS 5432 (msg:"TEST postgres copy program"; flow:established,to_server; content:"COPY"; classtype:attempted-admin; metadata:attack_target SQL_Server; sid:1002; rev:1;)
drop tcp any any -> $HOME_NET 22 (msg:"TEST ssh scanner"; flow:to_server; content:"SSH-"; classtype:misc-activity; sid:1005; rev:1;)
alert tcp any any -> any any (msg:"TEST unsupported"; lua:check.lua; sid:1099; rev:1;)
`

const cliIDSPolicy = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web1}
spec: {ips: [10.81.0.10], host: h1, interface: bhwweb1, os: linux, tags: {tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db1}
spec: {ips: [10.81.0.20], host: h1, interface: bhwdb1, os: linux, tags: {tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: web}
spec: {match: tier == "web"}
---
apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: baseline}
spec: {mode: detect}
---
apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: web-ips}
spec: {mode: prevent, appliedTo: [web], signatures: {sids: [1005]}}
`

func TestIDSRulesCLI(t *testing.T) {
	conn := startManager(t)
	with := func(args ...string) []string { return append(args, conn...) }
	dir := t.TempDir()
	path := filepath.Join(dir, "local.rules.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write([]byte(cliTestRules))
	zw.Close()
	f.Close()

	out := mustRun(t, "", with("ids", "import", path)...)
	for _, want := range []string{"signature set local version 1: 3 rules loaded, 1 not loaded", "unsupported keywords: lua (1)", "local.rules.gz:4: sid 1099:"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	// Nothing usable: refused, with the reasons.
	bad := filepath.Join(dir, "bad.rules")
	os.WriteFile(bad, []byte("alert tcp any any -> any any (msg:\"x\"; lua:a.lua; sid:7;)\n"), 0o600)
	out, err = run(t, "", with("ids", "import", bad)...)
	if err == nil || !strings.Contains(err.Error(), "no rule loaded") || !strings.Contains(err.Error(), "bad.rules:1: sid 7:") {
		t.Fatalf("import of nothing usable: %v\n%s", err, out)
	}
	out = mustRun(t, "", with("ids", "import", path, "--name", "second", "-o", "json")...)
	var res api.IDSImportResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Name != "second" || res.Loaded != 3 {
		t.Fatalf("import -o json: %+v %v\n%s", res, err, out)
	}

	out = mustRun(t, "", with("ids", "signature-sets")...)
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "local") || !strings.Contains(out, "second") {
		t.Errorf("signature-sets:\n%s", out)
	}
	// One set: what did not load, later, without the file.
	out = mustRun(t, "", with("ids", "rulesets", "local")...)
	for _, want := range []string{"signature set local version 1: 3 rules loaded, 1 not loaded", "unsupported keywords: lua (1)", "  local:4: sid 1099:"} {
		if !strings.Contains(out, want) {
			t.Errorf("rulesets local lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, "", with("ids", "rulesets", "nosuch")...); err == nil || !strings.Contains(err.Error(), `signature set "nosuch" not found`) {
		t.Errorf("rulesets nosuch: %v", err)
	}
	// second repeats local's sids: local (first by name) is used.
	out = mustRun(t, "", with("ids", "rulesets", "-o", "yaml")...)
	if !strings.Contains(out, "shadowed: 3") {
		t.Errorf("rulesets -o yaml:\n%s", out)
	}

	pol := filepath.Join(dir, "ids.yaml")
	os.WriteFile(pol, []byte(cliIDSPolicy), 0o600)
	mustRun(t, "", with("apply", "-f", pol)...)

	// The profiles are policy objects: get shows them as a table.
	out = mustRun(t, "", with("get", "idsprofiles")...)
	for _, want := range []string{"NAME      MODE     APPLIED-TO  SIGNATURES  WORKLOAD-AWARE", "baseline  detect   -           all         true", "web-ips   prevent  web         +1 sids     true"} {
		if !strings.Contains(out, want) {
			t.Errorf("get idsprofiles lacks %q:\n%s", want, out)
		}
	}

	out = mustRun(t, "", with("ids", "rules", "--workload", "db1")...)
	for _, want := range []string{"workload db1 on host h1 (bhwdb1): detect, profiles baseline", "known: os linux; roles db,server from tag tier=db",
		"1002", "1005", "left out by the workload-aware step (1):", "1001 (TEST web path traversal) by baseline: attack_target Web_Server needs a web server"} {
		if !strings.Contains(out, want) {
			t.Errorf("rules --workload db1 lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "", with("ids", "rules", "--workload", "web1", "--sid", "1005")...)
	for _, want := range []string{"prevent, profiles baseline, web-ips", "1005  drop    drop (blocks)", "web-ips: chosen by sid", "baseline: chosen", `drop tcp any any -> $HOME_NET 22`} {
		if !strings.Contains(out, want) {
			t.Errorf("rules --workload web1 --sid 1005 lacks %q:\n%s", want, out)
		}
	}
	// With preventAction drop, web-ips enforces the alert signatures it
	// chose too; the drop signature keeps its own action.
	os.WriteFile(pol, []byte(strings.Replace(cliIDSPolicy, "spec: {mode: prevent,", "spec: {mode: prevent, preventAction: drop,", 1)), 0o600)
	mustRun(t, "", with("apply", "-f", pol)...)
	out = mustRun(t, "", with("ids", "rules", "--workload", "web1")...)
	for _, want := range []string{"SID   ACTION  ENFORCED       PRIORITY", "1001  alert   drop (blocks)", "1005  drop    drop (blocks)"} {
		if !strings.Contains(out, want) {
			t.Errorf("rules --workload web1 with preventAction drop lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "", with("ids", "rules", "--workload", "db1")...)
	if !strings.Contains(out, "1005  drop    alert only") {
		t.Errorf("rules --workload db1 (detect) with preventAction drop on web:\n%s", out)
	}
	out = mustRun(t, "", with("ids", "rules", "--set", "local")...)
	if !strings.Contains(out, "1002  local  alert   tcp") {
		t.Errorf("rules --set local:\n%s", out)
	}
	if _, err := run(t, "", with("ids", "rules", "--workload", "nosuch")...); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown workload: %v", err)
	}
}

func TestSetNameOf(t *testing.T) {
	for in, want := range map[string]string{"/x/et-open-suricata-5.0.rules.gz": "et-open-suricata-5.0", "Local.rules": "local", "a.txt": "a.txt"} {
		if got := setNameOf(in); got != want {
			t.Errorf("setNameOf(%q) = %q, want %q", in, got, want)
		}
	}
}
