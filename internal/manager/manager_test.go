package manager

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// testManager is a real manager (SQLite file, own CA, HTTPS on loopback).
type testManager struct {
	srv    *Server
	url    string
	dir    string
	tokens map[string]string // role -> secret
}

func startManager(t *testing.T) *testManager {
	t.Helper()
	return startManagerWith(t, Config{})
}

// startManagerWith is startManager with cfg's fields beyond the data dir
// and API listener (e.g. AgentListen).
func startManagerWith(t *testing.T, cfg Config) *testManager {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DataDir, cfg.Listen = dir, ln.Addr().String()
	srv, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		srv.Close()
	})
	admin, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatalf("admin token file: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(dir, AdminTokenFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v, want 0600", st.Mode().Perm())
	}
	tm := &testManager{srv: srv, url: "https://" + ln.Addr().String(), dir: dir, tokens: map[string]string{api.RoleAdmin: strings.TrimSpace(string(admin))}}
	for _, role := range []string{api.RoleOperator, api.RoleAuditor} {
		secret, _, err := srv.store.CreateToken(context.Background(), role+"-user", role, 0)
		if err != nil {
			t.Fatal(err)
		}
		tm.tokens[role] = secret
	}
	waitHealthy(t, tm)
	return tm
}

func waitHealthy(t *testing.T, tm *testManager) {
	c := tm.client(t, "")
	for i := 0; i < 100; i++ {
		if _, err := c.Raw(context.Background(), "/healthz"); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("manager did not become healthy")
}

func (tm *testManager) client(t *testing.T, role string) *apiclient.Client {
	t.Helper()
	c, err := apiclient.New(tm.url, tm.tokens[role], tm.srv.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fillPath replaces path parameters with plausible values.
func fillPath(p string) string {
	r := strings.NewReplacer("{kind}", "group", "{name}", "nosuch", "{number}", "1", "{id}", "nosuch")
	return r.Replace(p)
}

// TestAuthEveryRoute walks the route table itself, so a route added later
// without the right role fails here.
func TestAuthEveryRoute(t *testing.T) {
	tm := startManager(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(tm)}}
	do := func(rt route, token string) int {
		req, err := http.NewRequest(rt.method, tm.url+fillPath(rt.path), strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	roles := []string{api.RoleAuditor, api.RoleOperator, api.RoleAdmin}
	protected := 0
	for _, rt := range tm.srv.routes {
		name := rt.method + " " + rt.path
		if rt.role == "" {
			if rt.path != "/healthz" {
				t.Errorf("%s: only /healthz may be open", name)
			}
			continue
		}
		protected++
		if code := do(rt, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without token: %d, want 401", name, code)
		}
		if code := do(rt, "bh_not-a-real-token"); code != http.StatusUnauthorized {
			t.Errorf("%s with a bad token: %d, want 401", name, code)
		}
		for _, role := range roles {
			code := do(rt, tm.tokens[role])
			allowed := api.RoleRank(role) >= api.RoleRank(rt.role)
			switch {
			case allowed && (code == http.StatusUnauthorized || code == http.StatusForbidden):
				t.Errorf("%s as %s: %d, want access", name, role, code)
			case !allowed && code != http.StatusForbidden:
				t.Errorf("%s as %s: %d, want 403", name, role, code)
			}
		}
	}
	if protected < 15 {
		t.Fatalf("only %d protected routes: the route table is not what the test walks", protected)
	}
}

func readExample(t *testing.T) []api.Document {
	t.Helper()
	data, err := os.ReadFile("../../examples/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policy.Decode("shop.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return wire(t, docs)
}

func wire(t *testing.T, docs []policy.Document) []api.Document {
	t.Helper()
	out := make([]api.Document, len(docs))
	for i, d := range docs {
		b, err := json.Marshal(d.Object)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = api.Document{Source: d.Source, Object: b}
	}
	return out
}

func TestApplyEvalHistoryRollback(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	op := tm.client(t, api.RoleOperator)

	resp, err := op.Apply(ctx, api.ApplyRequest{Documents: readExample(t)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Revision != 1 || len(resp.Changes) == 0 {
		t.Fatalf("first apply: revision %d with %d changes", resp.Revision, len(resp.Changes))
	}
	// Applying the same documents again changes nothing.
	again, err := op.Apply(ctx, api.ApplyRequest{Documents: readExample(t)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Revision != 1 || len(again.Changes) != 0 {
		t.Fatalf("re-apply: revision %d with changes %+v, want 1 and none", again.Revision, again.Changes)
	}

	cases := []struct {
		req     api.EvalRequest
		verdict string
		rule    string
		staged  string
	}{
		{api.EvalRequest{From: "10.10.2.10", To: "10.10.3.10", Proto: "tcp", Port: 5432}, "allow", "shop/api-to-db", ""},
		{api.EvalRequest{From: "10.10.1.10", To: "10.10.3.10", Proto: "tcp", Port: 5432}, "reject", "shop/deny-rest", ""},
		{api.EvalRequest{From: "10.10.1.10", To: "10.10.2.10", Proto: "tcp", Port: 8080, App: "APP_TLS", TLSVersion: "1.3"}, "allow", "shop/web-to-api", ""},
		{api.EvalRequest{From: "10.10.1.10", To: "10.10.2.10", Proto: "tcp", Port: 8080}, "reject", "shop/deny-rest", "shop/web-to-api-plain"},
		{api.EvalRequest{From: "10.10.66.7", To: "10.10.1.10", Proto: "tcp", Port: 443}, "drop", "emergency/block-quarantine", ""},
		{api.EvalRequest{From: "10.10.9.22", To: "10.10.3.10", Proto: "tcp", Port: 22}, "allow", "infra/admin-ssh", ""},
	}
	for _, c := range cases {
		got, err := op.Eval(ctx, c.req)
		if err != nil {
			t.Fatalf("eval %+v: %v", c.req, err)
		}
		if got.Verdict != c.verdict || got.Rule != c.rule {
			t.Errorf("eval %s->%s %s/%d: %s by %s, want %s by %s", c.req.From, c.req.To, c.req.Proto, c.req.Port, got.Verdict, got.Rule, c.verdict, c.rule)
		}
		if c.staged != "" && got.StagedRule != c.staged {
			t.Errorf("eval %s->%s: staged rule %q, want %q", c.req.From, c.req.To, got.StagedRule, c.staged)
		}
		if got.RuleID == 0 {
			t.Errorf("eval %s->%s: rule id 0", c.req.From, c.req.To)
		}
	}

	// A bad document is refused whole: the good documents beside it are not applied.
	bad := `apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: good-one}
spec: {ips: [192.0.2.0/24]}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: broken}
spec:
  category: Application
  rules:
  - name: r1
    sources: [no-such-group]
    action: allow
`
	docs, err := policy.Decode("bad.yaml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, err = op.Apply(ctx, api.ApplyRequest{Documents: wire(t, docs)})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity {
		t.Fatalf("apply of a bad reference: %v, want 422", err)
	}
	if len(ae.Body.Details) != 1 || !strings.Contains(ae.Body.Details[0].Message, `unknown group "no-such-group"`) ||
		!strings.Contains(ae.Body.Details[0].Message, "bad.yaml") || ae.Body.Details[0].Field != "spec.rules[0].sources[0]" {
		t.Errorf("error details: %+v", ae.Body.Details)
	}
	if _, err := op.Get(ctx, policy.KindGroup, "good-one", 0); err == nil {
		t.Error("the good document of a refused apply was applied")
	}

	// Deleting a group still referenced is refused.
	if _, err := op.Delete(ctx, policy.KindGroup, "shop-db"); err == nil {
		t.Error("deleting a referenced group succeeded")
	}

	// Change the default rule, then roll back.
	dr := []api.Document{{Object: json.RawMessage(`{"apiVersion":"bulkhead.io/v1","kind":"DefaultRule","metadata":{"name":"default"},"spec":{"action":"drop"}}`)}}
	r2, err := op.Apply(ctx, api.ApplyRequest{Documents: dr, Summary: "zero trust"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Revision != 2 {
		t.Fatalf("revision %d, want 2", r2.Revision)
	}
	ev, err := op.Eval(ctx, api.EvalRequest{From: "10.10.9.53", To: "192.0.2.1", Proto: "udp", Port: 123})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != "drop" || ev.RuleID != policy.DefaultRuleID {
		t.Errorf("after default drop: %s by %d, want drop by the default rule", ev.Verdict, ev.RuleID)
	}
	old, err := op.Eval(ctx, api.EvalRequest{From: "10.10.9.53", To: "192.0.2.1", Proto: "udp", Port: 123, Revision: 1})
	if err != nil {
		t.Fatal(err)
	}
	if old.Verdict != "allow" || old.Revision != 1 {
		t.Errorf("eval on revision 1: %s (revision %d), want allow", old.Verdict, old.Revision)
	}
	rb, err := op.Rollback(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Revision != 3 {
		t.Fatalf("rollback made revision %d, want 3", rb.Revision)
	}
	revs, err := op.Revisions(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 3 || revs[0].Number != 3 || revs[0].Rollback != 1 || revs[1].Summary != "zero trust" || revs[0].Author != "operator-user" {
		t.Errorf("revisions: %+v", revs)
	}
	ev, err = op.Eval(ctx, api.EvalRequest{From: "10.10.9.53", To: "192.0.2.1", Proto: "udp", Port: 123})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != "allow" {
		t.Errorf("after rollback: %s, want allow", ev.Verdict)
	}
	// Rule ids survive revisions.
	r1, _ := op.Revision(ctx, 1)
	r3, _ := op.Revision(ctx, 3)
	for k, id := range r1.Set.RuleIDs {
		if r3.Set.RuleIDs[k] != id {
			t.Errorf("rule %s: id %d in revision 1, %d in revision 3", k, id, r3.Set.RuleIDs[k])
		}
	}
	diff, err := op.Diff(ctx, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff.Changes) != 1 || diff.Changes[0].Kind != policy.KindDefaultRule || !strings.Contains(diff.Changes[0].Diff, "drop") {
		t.Errorf("diff 1..2: %+v", diff.Changes)
	}

	// The audit log says who changed what, with the diff.
	audit, err := tm.client(t, api.RoleAuditor).Audit(ctx, apiclient.AuditQuery{Object: "DefaultRule/default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 2 || audit[0].Action != "rollback" || audit[1].Action != "apply" || audit[1].Actor != "operator-user" || !strings.Contains(audit[1].Diff, "drop") {
		t.Errorf("audit: %+v", audit)
	}
}

func TestOpenAPIListsEveryRoute(t *testing.T) {
	tm := startManager(t)
	raw, err := tm.client(t, api.RoleAuditor).Raw(context.Background(), api.Prefix+"/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI == "" {
		t.Fatal("no openapi version")
	}
	for _, rt := range tm.srv.routes {
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("OpenAPI lacks %s %s", rt.method, rt.path)
		}
	}
	if !strings.Contains(string(raw), `"ApplyRequest"`) {
		t.Error("OpenAPI lacks the ApplyRequest schema")
	}
}

func TestMetrics(t *testing.T) {
	tm := startManager(t)
	c := tm.client(t, api.RoleAuditor)
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	raw, err := c.Raw(context.Background(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `bulkhead_api_requests_total{code="200",route="GET /api/v1/whoami"} 1`) {
		t.Errorf("metrics lack the whoami request:\n%.2000s", raw)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{DataDir: "", Listen: "127.0.0.1:1"}, "dataDir"},
		{Config{DataDir: "/x", Listen: "nope"}, "listen"},
		{Config{DataDir: "/x", Listen: "127.0.0.1:1", LogLevel: "loud"}, "logLevel"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %s", c.cfg, err, c.want)
		}
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
