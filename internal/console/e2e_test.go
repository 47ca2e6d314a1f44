package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/console"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// chromiumPath is Debian's chromium, which the browser tests drive; the
// BULKHEAD_CHROMIUM variable overrides it.
func chromiumPath() string {
	if p := os.Getenv("BULKHEAD_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// TestConsoleInBrowser runs web/e2e/console.mjs in headless chromium against
// a real manager (HTTPS, SQLite, an enrolled agent) holding
// examples/shop.yaml: log in, read every page, edit, reorder and publish
// rules, roll back, and check that an auditor is offered no edits. Then it
// checks through the API that the browser's changes really were published.
//
// BULKHEAD_SCREENSHOTS=DIR (relative to the repository root) also writes a
// PNG of each page there, e.g. docs/screenshots.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	// Outside CI a missing browser or build skips the test; in CI (where
	// make test has built the console and .ci/run installed chromium) it is
	// a failure, so the browser tests cannot silently stop running.
	need := t.Skipf
	if os.Getenv("CI") != "" {
		need = t.Fatalf
	}
	if !console.Built() {
		need("browser test needs the built console: run make console")
	}
	if _, err := os.Stat(chromiumPath()); err != nil {
		need("browser test needs chromium at %s (apt-get install chromium): %v", chromiumPath(), err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		need("browser test needs node in PATH")
	}
	root, _ := filepath.Abs("../..")
	web := filepath.Join(root, "web")
	if _, err := os.Stat(filepath.Join(web, "node_modules", "playwright-core")); err != nil {
		need("browser test needs web/node_modules: run make console")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := startConsoleManager(t, ctx)
	url, admin, adminToken := m.url, m.admin, m.adminToken
	// The console at / leaves the API's own answers alone.
	var apiErr *apiclient.Error
	if _, err := admin.Raw(ctx, api.Prefix+"/no-such-route"); !errors.As(err, &apiErr) || apiErr.Status != 404 || !strings.Contains(apiErr.Body.Error, "no route") {
		t.Errorf("GET %s/no-such-route: %v, want the API's JSON 404", api.Prefix, err)
	}
	auditor, err := admin.CreateToken(ctx, api.TokenRequest{Name: "console-auditor", Role: api.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}

	// Revision 1: the example shop, as `bulkhead apply -f examples/shop.yaml`.
	data, err := os.ReadFile(filepath.Join(root, "examples", "shop.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policy.Decode("shop.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	wire := make([]api.Document, len(docs))
	for i, d := range docs {
		b, err := json.Marshal(d.Object)
		if err != nil {
			t.Fatal(err)
		}
		wire[i] = api.Document{Source: d.Source, Object: b}
	}
	if r, err := admin.Apply(ctx, api.ApplyRequest{Documents: wire}); err != nil || r.Revision != 1 {
		t.Fatalf("apply shop.yaml: revision %d, %v", r.Revision, err)
	}

	// One agent host, host-1 (where web-1 runs), with a data plane that only
	// records, so the Hosts page shows a real connection and realized revision.
	boot, err := admin.CreateBootstrapToken(ctx, api.BootstrapTokenRequest{TTL: "10m", Host: "host-1"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Manager: boot.AgentAddress, BootstrapToken: boot.Secret, CAFingerprint: boot.CAFingerprint,
		StateDir: t.TempDir(), HostName: "host-1", IfacePattern: "bhconsolenomatch*",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}, &recorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(ctx) }()
	defer func() { cancel(); <-agentDone }()
	waitFor(t, "host-1 to realize revision 1", func() bool {
		hosts, err := admin.Hosts(ctx)
		return err == nil && len(hosts) == 1 && hosts[0].RealizedRevision == 1 && hosts[0].InSync
	})

	shots := os.Getenv("BULKHEAD_SCREENSHOTS")
	if shots != "" && !filepath.IsAbs(shots) {
		shots = filepath.Join(root, shots)
	}
	script := exec.CommandContext(ctx, node, filepath.Join("e2e", "console.mjs"))
	script.Dir = web
	script.Env = append(os.Environ(),
		"BULKHEAD_URL="+url,
		"BULKHEAD_ADMIN_TOKEN="+strings.TrimSpace(string(adminToken)),
		"BULKHEAD_AUDITOR_TOKEN="+auditor.Secret,
		"BULKHEAD_CHROMIUM="+chromiumPath(),
		"BULKHEAD_SCREENSHOTS="+shots,
	)
	var out bytes.Buffer
	script.Stdout, script.Stderr = &out, &out
	start := time.Now()
	err = script.Run()
	t.Logf("web/e2e/console.mjs (%s):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("browser test failed: %v", err)
	}

	// What the browser did is in the manager: revision 2 published by the
	// admin with the reordered and edited rules, revision 3 the rollback.
	revs, err := admin.Revisions(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 3 || revs[0].Rollback != 1 || !strings.HasPrefix(revs[1].Summary, "console:") {
		t.Fatalf("revisions after the browser test: %+v", revs)
	}
	r2, err := admin.Revision(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	shop := r2.Set.Policies["shop"]
	var names []string
	for _, r := range shop.Spec.Rules {
		names = append(names, r.Name)
	}
	if want := []string{"web-from-anywhere", "web-to-api", "api-to-db", "web-to-api-plain", "deny-rest"}; !slices.Equal(names, want) {
		t.Errorf("revision 2 rule order %v, want %v", names, want)
	}
	if got := shop.Spec.Rules[0].Services; !slices.Equal(got, []string{"web", "tcp/8443"}) {
		t.Errorf("revision 2 web-from-anywhere services %v, want [web tcp/8443]", got)
	}
	if revs[1].Author != "admin" {
		t.Errorf("revision 2 author %q, want admin", revs[1].Author)
	}
	r3, err := admin.Revision(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r1, _ := admin.Revision(ctx, 1); !equalJSON(t, r1.Set.Policies, r3.Set.Policies) {
		t.Error("revision 3 (the rollback) does not hold revision 1's policies")
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// recorder is the agent's data plane here: it keeps the last revision it
// was asked to enforce.
type recorder struct {
	revision atomic.Int64
}

func (r *recorder) Apply(ctx context.Context, revision int64, format string, payload []byte) error {
	r.revision.Store(revision)
	return nil
}

func (r *recorder) Verify(ctx context.Context) (int64, bool, error) {
	return r.revision.Load(), true, nil
}

func (r *recorder) Remove(ctx context.Context) error { return nil }
