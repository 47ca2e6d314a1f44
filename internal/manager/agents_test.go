package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

// recordingEnforcer is the agent's data plane in these tests: it remembers
// the revisions applied.
type recordingEnforcer struct {
	mu       sync.Mutex
	revision int64
	applied  chan int64
}

func (e *recordingEnforcer) Apply(ctx context.Context, revision int64, format string, payload []byte) error {
	e.mu.Lock()
	e.revision = revision
	e.mu.Unlock()
	e.applied <- revision
	return nil
}

func (e *recordingEnforcer) Verify(ctx context.Context) (int64, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.revision, true, nil
}

func (e *recordingEnforcer) Remove(ctx context.Context) error { return nil }

// startManagerWithAgents runs a real manager with its agent channel on a
// loopback port.
func startManagerWithAgents(t *testing.T) *testManager {
	t.Helper()
	tm := startManagerWith(t, Config{AgentListen: "127.0.0.1:0"})
	if tm.srv.AgentAddr() == "" {
		t.Fatal("agent channel not listening")
	}
	return tm
}

func TestAgentChannelEndToEnd(t *testing.T) {
	tm := startManagerWithAgents(t)
	ctx := context.Background()
	op, auditor := tm.client(t, api.RoleOperator), tm.client(t, api.RoleAuditor)
	// A desired state that changes with every revision, in place of the
	// data-plane compiler.
	tm.srv.ControlPlane().SetSpan(func(ctx context.Context, host string) (int64, string, []byte, error) {
		revs, err := tm.srv.store.Revisions(ctx, 1)
		if err != nil || len(revs) == 0 {
			return 0, "test/v1", []byte("nothing"), err
		}
		return revs[0].Number, "test/v1", fmt.Appendf(nil, "%s@%d", host, revs[0].Number), nil
	})

	if _, err := op.CreateBootstrapToken(ctx, api.BootstrapTokenRequest{TTL: "-1h"}); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("negative ttl: %v, want 400", err)
	}
	if _, err := op.CreateBootstrapToken(ctx, api.BootstrapTokenRequest{Host: "Not_A_Host"}); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("bad host name: %v, want 400", err)
	}
	tok, err := op.CreateBootstrapToken(ctx, api.BootstrapTokenRequest{TTL: "10m", Host: "hv-1"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.CAFingerprint != tm.srv.CA().Fingerprint() || tok.AgentAddress != tm.srv.AgentAddr() || !strings.HasPrefix(tok.Secret, "bhb_") {
		t.Errorf("token answer %+v", tok)
	}
	if d := time.Until(tok.Expires); d > 10*time.Minute || d < 9*time.Minute {
		t.Errorf("token expires in %s, want 10m", d)
	}

	enf := &recordingEnforcer{applied: make(chan int64, 10)}
	a, err := agent.New(agent.Config{
		Manager: tok.AgentAddress, BootstrapToken: tok.Secret, CAFingerprint: tok.CAFingerprint,
		StateDir: t.TempDir(), HostName: "hv-1", IfacePattern: "bhtestnomatch*",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}, enf, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(actx) }()
	defer func() { stop(); <-agentDone }()
	waitApplied := func(rev int64) {
		t.Helper()
		select {
		case got := <-enf.applied:
			if got != rev {
				t.Fatalf("agent applied revision %d, want %d", got, rev)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("revision %d never reached the agent", rev)
		}
	}
	waitApplied(0)

	resp, err := op.Apply(ctx, api.ApplyRequest{Documents: readExample(t)})
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(resp.Revision)
	var host api.Host
	deadline := time.Now().Add(10 * time.Second)
	for {
		hosts, err := auditor.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) == 1 {
			host = hosts[0]
		}
		if host.RealizedRevision == resp.Revision || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if host.Name != "hv-1" || !host.Connected || !host.InSync || host.RealizedRevision != resp.Revision ||
		host.PublishedRevision != resp.Revision || host.DesiredRevision != resp.Revision || host.LastSeen == nil || host.Revoked != nil {
		t.Errorf("GET /hosts after revision %d: %+v", resp.Revision, host)
	}

	// Enrollment and the token are in the audit log.
	audit, err := auditor.Audit(ctx, apiclient.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action+" "+e.Object)
	}
	joined := strings.Join(actions, "; ")
	if !strings.Contains(joined, "host.enroll Host/hv-1") || !strings.Contains(joined, "bootstrap-token.create BootstrapToken/"+tok.ID) {
		t.Errorf("audit log: %s", joined)
	}

	if err := auditor.RevokeHost(ctx, "hv-1"); !isStatus(err, http.StatusForbidden) {
		t.Errorf("auditor revokes: %v, want 403", err)
	}
	if err := op.RevokeHost(ctx, "nosuch"); !isStatus(err, http.StatusNotFound) {
		t.Errorf("revoke unknown host: %v, want 404", err)
	}
	if err := op.RevokeHost(ctx, "hv-1"); err != nil {
		t.Fatal(err)
	}
	hosts, err := auditor.Hosts(ctx)
	if err != nil || len(hosts) != 1 || hosts[0].Revoked == nil || hosts[0].Connected {
		t.Errorf("after revocation: %+v, %v", hosts, err)
	}
}

func isStatus(err error, code int) bool {
	var ae *apiclient.Error
	return errors.As(err, &ae) && ae.Status == code
}
