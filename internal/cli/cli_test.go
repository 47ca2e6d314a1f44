package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/manager"
)

// startManager runs a real manager on loopback and returns the flags that
// point the CLI at it.
func startManager(t *testing.T) []string {
	t.Helper()
	flags, _ := startManagerWith(t, manager.Config{})
	return flags
}

// startManagerServer is startManager that also returns the server, so that
// a test can ingest flow records as an agent would.
func startManagerServer(t *testing.T) ([]string, *manager.Server) {
	t.Helper()
	return startManagerWith(t, manager.Config{})
}

// startManagerWith runs a manager with cfg (its data dir and listen address
// filled in) and keeps the developer's own CLI config and environment out
// of the test.
func startManagerWith(t *testing.T, cfg manager.Config) ([]string, *manager.Server) {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.Listen = dir, ln.Addr().String()
	srv, err := manager.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	t.Setenv("BULKHEAD_CONFIG", filepath.Join(dir, "cli.yaml"))
	for _, v := range []string{"BULKHEAD_SERVER", "BULKHEAD_TOKEN", "BULKHEAD_TOKEN_FILE", "BULKHEAD_CA", "BULKHEAD_BOOTSTRAP_TOKEN"} {
		t.Setenv(v, "")
	}
	return []string{"--server", "https://" + ln.Addr().String(), "--token-file", filepath.Join(dir, manager.AdminTokenFile), "--ca", filepath.Join(dir, "ca.crt")}, srv
}

// run executes one CLI command line and returns its output and error.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String() + errOut.String(), err
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := run(t, stdin, args...)
	if err != nil {
		t.Fatalf("bulkhead %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestTour(t *testing.T) {
	conn := startManager(t)
	with := func(args ...string) []string { return append(args, conn...) }

	out := mustRun(t, "", with("apply", "-f", "../../examples/shop.yaml")...)
	if !strings.Contains(out, "revision 1 published") || !strings.Contains(out, "Policy/shop created") {
		t.Fatalf("apply output:\n%s", out)
	}
	out = mustRun(t, "", with("get", "groups")...)
	if !strings.Contains(out, "shop-web") || !strings.Contains(out, `app == "shop" && tier == "web"`) {
		t.Errorf("get groups:\n%s", out)
	}
	// What get -o yaml prints, apply takes back unchanged.
	yamlOut := mustRun(t, "", with("get", "policy", "-o", "yaml")...)
	out = mustRun(t, yamlOut, with("apply", "-f", "-")...)
	if !strings.Contains(out, "no change") {
		t.Errorf("re-applying get -o yaml changed something:\n%s\n--- input:\n%s", out, yamlOut)
	}
	out = mustRun(t, "", with("describe", "policy", "shop")...)
	if !strings.Contains(out, "api-to-db") || !strings.Contains(out, "Rules (revision 1") {
		t.Errorf("describe:\n%s", out)
	}
	out = mustRun(t, "", with("eval", "--from", "10.10.1.10", "--to", "10.10.3.10", "--port", "5432")...)
	if !strings.Contains(out, "verdict: reject by rule") || !strings.Contains(out, "shop/deny-rest") {
		t.Errorf("eval:\n%s", out)
	}
	out = mustRun(t, "", with("eval", "--from", "10.10.1.10", "--to", "10.10.3.10", "--port", "5432", "-o", "json")...)
	if !strings.Contains(out, `"verdict": "reject"`) {
		t.Errorf("eval -o json:\n%s", out)
	}

	changed := strings.Replace(yamlOut, "action: reject", "action: drop", 1)
	out = mustRun(t, changed, with("diff", "-f", "-")...)
	if !strings.Contains(out, "Policy/shop updated") || !strings.Contains(out, "+ ") {
		t.Errorf("diff:\n%s", out)
	}
	mustRun(t, changed, with("apply", "-f", "-", "-m", "drop instead of reject")...)
	out = mustRun(t, "", with("history")...)
	if !strings.Contains(out, "drop instead of reject") || !strings.Contains(out, "admin") {
		t.Errorf("history:\n%s", out)
	}
	out = mustRun(t, "", with("rollback", "1")...)
	if !strings.Contains(out, "revision 3 published") {
		t.Errorf("rollback:\n%s", out)
	}
	out = mustRun(t, "", with("audit", "--object", "Policy/shop", "--diff")...)
	if strings.Count(out, "Policy/shop") < 3 || !strings.Contains(out, "rollback") {
		t.Errorf("audit:\n%s", out)
	}
}

func TestApplyErrorsNameFileAndLine(t *testing.T) {
	conn := startManager(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: ok}
spec: {ports: [tcp/443]}
---
apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: broken}
spec: {ports: [tcp/9000-8000]}
`), 0o644)
	out, err := run(t, "", append([]string{"apply", "-f", bad}, conn...)...)
	if err == nil {
		t.Fatalf("bad apply succeeded:\n%s", out)
	}
	msg := err.Error()
	for _, want := range []string{"bad.yaml:9", "document 2", `Service "broken"`, "spec.ports[0]", "nothing was applied"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	out = mustRun(t, "", append([]string{"get", "services"}, conn...)...)
	if strings.Contains(out, "ok") {
		t.Errorf("a good document of a refused file was applied:\n%s", out)
	}

	// A reference error is found by the manager; the CLI still names the
	// exact line and column in the user's file.
	os.WriteFile(bad, []byte(`apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: ok}
spec: {ports: [tcp/443]}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  category: Application
  rules:
  - name: r
    sources: [web]
    destinations: [nowhere]
    action: allow
`), 0o644)
	_, err = run(t, "", append([]string{"apply", "-f", bad}, conn...)...)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:13:15: document 2 (Policy \"p\"): spec.rules[0].sources[0]: unknown group \"web\"") ||
		!strings.Contains(err.Error(), "bad.yaml:14:20:") {
		t.Errorf("reference errors:\n%v", err)
	}
	out = mustRun(t, "", append([]string{"get", "services"}, conn...)...)
	if strings.Contains(out, "ok") {
		t.Errorf("a good document of a refused file was applied:\n%s", out)
	}
}

func TestConnectionFromEnvAndLogin(t *testing.T) {
	conn := startManager(t)
	if _, err := run(t, "", "get", "groups"); err == nil || !strings.Contains(err.Error(), "no manager") {
		t.Fatalf("without settings: %v, want 'no manager'", err)
	}
	t.Setenv("BULKHEAD_SERVER", conn[1])
	t.Setenv("BULKHEAD_TOKEN_FILE", conn[3])
	t.Setenv("BULKHEAD_CA", conn[5])
	mustRun(t, "", "get", "groups")
	out := mustRun(t, "", "login")
	if !strings.Contains(out, "as admin (role admin)") {
		t.Errorf("login: %s", out)
	}
	for _, v := range []string{"BULKHEAD_SERVER", "BULKHEAD_TOKEN_FILE", "BULKHEAD_CA"} {
		t.Setenv(v, "")
	}
	mustRun(t, "", "get", "groups") // from the config file login wrote
	cfg := os.Getenv("BULKHEAD_CONFIG")
	if st, err := os.Stat(cfg); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config file %s: %v %v", cfg, st, err)
	}
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(data, []byte("colour: blue\n")...), 0o600)
	if _, err := run(t, "", "get", "groups"); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown config key: %v, want an error naming it", err)
	}
}

func TestRolesEnforcedThroughCLI(t *testing.T) {
	conn := startManager(t)
	out := mustRun(t, "", append([]string{"apitoken", "create", "--name", "viewer", "--role", "auditor"}, conn...)...)
	secret := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	tf := filepath.Join(t.TempDir(), "viewer.token")
	os.WriteFile(tf, []byte(secret), 0o600)
	viewer := []string{"--server", conn[1], "--token-file", tf, "--ca", conn[5]}
	mustRun(t, "", append([]string{"get", "policies"}, viewer...)...)
	_, err := run(t, "", append([]string{"apply", "-f", "../../examples/shop.yaml"}, viewer...)...)
	if err == nil || !strings.Contains(err.Error(), "auditor") {
		t.Errorf("auditor apply: %v, want a role error", err)
	}
}

// TestHelpEverywhere: every command explains itself.
func TestHelpEverywhere(t *testing.T) {
	root := NewRoot(strings.NewReader(""), io.Discard, io.Discard)
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		n++
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("command %q has no short help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			if sub.Name() != "help" && sub.Name() != "completion" {
				walk(sub)
			}
		}
	}
	walk(root)
	if n < 12 {
		t.Errorf("only %d commands", n)
	}
	out := mustRun(t, "", "eval", "--help")
	if !strings.Contains(out, "--tls-version") {
		t.Errorf("eval --help:\n%s", out)
	}
}

// TestDescribeJSON: describe -o json prints the resource as JSON, for
// scripts; the table form adds the rule ids for people.
func TestDescribeJSON(t *testing.T) {
	conn := startManager(t)
	with := func(args ...string) []string { return append(args, conn...) }
	mustRun(t, "apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  category: Application\n  rules:\n  - {name: r, services: [tcp/22], action: drop}\n", with("apply", "-f", "-")...)
	out := mustRun(t, "", with("describe", "policy", "p", "-o", "json")...)
	var p struct {
		Kind string `json:"kind"`
		Spec struct {
			Rules []struct{ Name string } `json:"rules"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Kind != "Policy" || len(p.Spec.Rules) != 1 || p.Spec.Rules[0].Name != "r" {
		t.Errorf("describe -o json: %v\n%s", err, out)
	}
}
