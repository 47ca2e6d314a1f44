package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/controlplane"
	"github.com/bulkhead/bulkhead/internal/pki"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/store"
)

// fakeEnforcer stands in for the kernel: it remembers what was applied and
// can be made to fail or to lose its table.
type fakeEnforcer struct {
	mu        sync.Mutex
	applies   []applyCall
	kernelRev int64
	present   bool
	failWith  error
	removed   int
	applied   chan applyCall
}

type applyCall struct {
	revision int64
	format   string
	payload  string
}

func newFake() *fakeEnforcer { return &fakeEnforcer{applied: make(chan applyCall, 100)} }

func (f *fakeEnforcer) Apply(ctx context.Context, revision int64, format string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return f.failWith
	}
	f.kernelRev, f.present = revision, true
	c := applyCall{revision, format, string(payload)}
	f.applies = append(f.applies, c)
	f.applied <- c
	return nil
}

func (f *fakeEnforcer) Verify(ctx context.Context) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kernelRev, f.present, nil
}

func (f *fakeEnforcer) Remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.present, f.kernelRev = false, 0
	f.removed++
	return nil
}

// flush is someone deleting our table behind the agent's back.
func (f *fakeEnforcer) flush() {
	f.mu.Lock()
	f.present, f.kernelRev = false, 0
	f.mu.Unlock()
}

func (f *fakeEnforcer) setFail(err error) {
	f.mu.Lock()
	f.failWith = err
	f.mu.Unlock()
}

func (f *fakeEnforcer) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applies)
}

// waitApply waits for the next Apply and checks its revision.
func (f *fakeEnforcer) waitApply(t *testing.T, revision int64) applyCall {
	t.Helper()
	select {
	case c := <-f.applied:
		if c.revision != revision {
			t.Fatalf("applied revision %d (%q), want %d", c.revision, c.payload, revision)
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("revision %d was not applied", revision)
	}
	return applyCall{}
}

// testManager is the manager side: a control plane on loopback over a real
// SQLite file and CA in dir, restartable on the same address.
type testManager struct {
	dir   string
	addr  string
	st    *store.SQLite
	ca    *pki.CA
	cp    *controlplane.ControlPlane
	flows chan *agentapi.FlowBatch
	stop  func()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// revisionSpan gives each host a payload naming the host and the latest
// revision, so every revision reaches every host.
func revisionSpan(st store.Store) controlplane.SpanFunc {
	return func(ctx context.Context, host string) (int64, string, []byte, error) {
		latest, err := st.Latest(ctx)
		if err != nil {
			return 0, "", nil, err
		}
		return latest.Number, "test/v1", fmt.Appendf(nil, "%s@%d", host, latest.Number), nil
	}
}

func startManager(t *testing.T, dir, addr string) *testManager {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(dir, "bulkhead.db"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := &testManager{dir: dir, st: st, ca: ca, flows: make(chan *agentapi.FlowBatch, 100)}
	m.cp, err = controlplane.New(controlplane.Config{
		Store: st, CA: ca, Log: quiet(), Span: revisionSpan(st),
		Heartbeat: 100 * time.Millisecond, Poll: 50 * time.Millisecond,
		Flows: func(ctx context.Context, host string, b *agentapi.FlowBatch) error { m.flows <- b; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond) // the previous listener may still be closing
	}
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.cp.Serve(ctx, ln, cert); close(done) }()
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			st.Close()
		})
	}
	t.Cleanup(m.stop)
	return m
}

func (m *testManager) token(t *testing.T) string {
	t.Helper()
	secret, _, err := m.cp.CreateBootstrapToken(context.Background(), "", "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func (m *testManager) publish(t *testing.T) int64 {
	t.Helper()
	ctx := context.Background()
	latest, err := m.st.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.st.Commit(ctx, store.Commit{Base: latest.Number, Author: "test", Set: policy.NewSet()})
	if err != nil {
		t.Fatal(err)
	}
	m.cp.Changed()
	return n
}

func (m *testManager) host(t *testing.T, name string) controlplane.HostInfo {
	t.Helper()
	hosts, _, err := m.cp.Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if h.Name == name {
			return h
		}
	}
	return controlplane.HostInfo{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testConfig(m *testManager, stateDir string) Config {
	return Config{
		Manager: m.addr, StateDir: stateDir, HostName: "h1",
		CAFingerprint: m.ca.Fingerprint(),
		// No interface has this name: discovery runs for real, in the test's
		// own namespace, and finds nothing.
		IfacePattern:  "bhtestnomatch*",
		DriftInterval: 50 * time.Millisecond,
		BackoffMin:    20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		HeartbeatTimeout: 2 * time.Second, FlowInterval: 50 * time.Millisecond,
	}
}

type runningAgent struct {
	agent *Agent
	// done is closed when Run returned; err is what it returned.
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

func (ra *runningAgent) stop() error {
	ra.cancel()
	<-ra.done
	return ra.err
}

func runAgent(t *testing.T, cfg Config, enf Enforcer) *runningAgent {
	t.Helper()
	a, err := New(cfg, enf, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{agent: a, done: make(chan struct{}), cancel: cancel}
	go func() { ra.err = a.Run(ctx); close(ra.done) }()
	t.Cleanup(func() { ra.stop() })
	return ra
}

func TestEnrollFollowAndRestart(t *testing.T) {
	m := startManager(t, t.TempDir(), "127.0.0.1:0")
	state := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(m, state)
	cfg.BootstrapToken = m.token(t)
	enf := newFake()
	ra := runAgent(t, cfg, enf)

	if c := enf.waitApply(t, 0); c.payload != "h1@0" || c.format != "test/v1" {
		t.Errorf("first apply %+v", c)
	}
	waitFor(t, "the desired state saved", func() bool {
		_, err := os.Stat(filepath.Join(state, DesiredFile))
		return err == nil
	})
	for _, f := range []string{KeyFile, CertFile, CAFile, DesiredFile} {
		fi, err := os.Stat(filepath.Join(state, f))
		if err != nil {
			t.Fatalf("state dir: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", f, fi.Mode().Perm())
		}
	}
	rev := m.publish(t)
	enf.waitApply(t, rev)
	waitFor(t, "host in sync at revision 1", func() bool {
		h := m.host(t, "h1")
		return h.Connected && h.InSync && h.RealizedRevision == rev
	})

	// Flow records reach the manager.
	ra.agent.RecordFlows(&agentapi.FlowRecord{SrcIp: []byte{10, 0, 0, 1}, DstIp: []byte{10, 0, 0, 2}, Protocol: 17, DstPort: 53, Verdict: agentapi.Verdict_VERDICT_DROP, RuleId: 7})
	select {
	case b := <-m.flows:
		if len(b.Records) != 1 || b.Records[0].RuleId != 7 {
			t.Errorf("flow batch %+v", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flow records did not arrive")
	}

	if err := ra.stop(); err != nil {
		t.Fatalf("agent stopped with %v", err)
	}
	waitFor(t, "host disconnected", func() bool { return !m.host(t, "h1").Connected })

	// Later starts need no token: the state dir holds the certificate. The
	// saved state is applied at once, and not sent again.
	cfg.BootstrapToken = ""
	enf2 := newFake()
	runAgent(t, cfg, enf2)
	if c := enf2.waitApply(t, rev); c.payload != "h1@1" {
		t.Errorf("re-applied %+v", c)
	}
	waitFor(t, "host reconnected in sync", func() bool { h := m.host(t, "h1"); return h.Connected && h.InSync })
	time.Sleep(300 * time.Millisecond) // a few heartbeats
	if n := enf2.calls(); n != 1 {
		t.Errorf("%d applies after a restart in sync, want 1 (the saved state)", n)
	}
	rev = m.publish(t)
	enf2.waitApply(t, rev)
}

func TestEnrollRefusals(t *testing.T) {
	m := startManager(t, t.TempDir(), "127.0.0.1:0")
	other, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	used := m.token(t)
	// Spend it.
	cfg := testConfig(m, t.TempDir())
	cfg.HostName, cfg.BootstrapToken = "first", used
	runAgent(t, cfg, newFake())
	waitFor(t, "first host enrolled", func() bool { return m.host(t, "first").Name == "first" })

	caFile := filepath.Join(m.dir, pki.CACertFile)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"wrong token", func(c *Config) { c.BootstrapToken = "bhb_" + strings.Repeat("A", 43) }, "bootstrap token not recognised"},
		{"reused token", func(c *Config) { c.BootstrapToken = used }, "bootstrap token already used"},
		{"no token", func(c *Config) { c.BootstrapToken = "" }, "not enrolled"},
		{"no trust anchor", func(c *Config) { c.CAFingerprint = "" }, "--ca FILE or --ca-fingerprint"},
		{"another manager's fingerprint", func(c *Config) { c.CAFingerprint = other.Fingerprint() }, "not the one --ca/--ca-fingerprint names"},
		{"another manager's CA file", func(c *Config) {
			c.CAFingerprint, c.CAFile = "", filepath.Join(t.TempDir(), "other.crt")
			os.WriteFile(c.CAFile, other.CertPEM(), 0o644)
		}, "not the one --ca/--ca-fingerprint names"},
		{"bad host name", func(c *Config) { c.HostName = "Bad_Name" }, "host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(m, t.TempDir())
			cfg.HostName, cfg.BootstrapToken = "second", m.token(t)
			tt.mod(&cfg)
			ra := runAgent(t, cfg, newFake())
			select {
			case <-ra.done:
				if err := ra.err; err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("agent: %v, want an error saying %q", err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("agent kept running after a refusal")
			}
		})
	}

	// The CA file way works too.
	cfg = testConfig(m, t.TempDir())
	cfg.HostName, cfg.BootstrapToken, cfg.CAFingerprint, cfg.CAFile = "third", m.token(t), "", caFile
	enf := newFake()
	runAgent(t, cfg, enf)
	enf.waitApply(t, 0)
}

func TestRestartWithManagerDown(t *testing.T) {
	m := startManager(t, t.TempDir(), "127.0.0.1:0")
	state := t.TempDir()
	cfg := testConfig(m, state)
	cfg.BootstrapToken = m.token(t)
	enf := newFake()
	ra := runAgent(t, cfg, enf)
	enf.waitApply(t, 0)
	rev := m.publish(t)
	enf.waitApply(t, rev)
	ra.stop()
	m.stop()

	// No manager: the saved state is enforced all the same, and drift is
	// repaired.
	enf2 := newFake()
	runAgent(t, cfg, enf2)
	if c := enf2.waitApply(t, rev); c.payload != fmt.Sprintf("h1@%d", rev) {
		t.Errorf("re-applied %+v", c)
	}
	enf2.flush()
	enf2.waitApply(t, rev)
	if rev, ok, _ := enf2.Verify(context.Background()); !ok || rev != 1 {
		t.Errorf("after drift repair the kernel holds %d (ok %v)", rev, ok)
	}
}

func TestReconnectAfterManagerRestart(t *testing.T) {
	dir := t.TempDir()
	m := startManager(t, dir, "127.0.0.1:0")
	cfg := testConfig(m, t.TempDir())
	cfg.BootstrapToken = m.token(t)
	enf := newFake()
	ra := runAgent(t, cfg, enf)
	enf.waitApply(t, 0)
	ra.agent.RecordFlows(&agentapi.FlowRecord{RuleId: 1})
	<-m.flows

	addr := m.addr
	m.stop()
	// While the manager is away, flow records wait in the agent's queue.
	ra.agent.RecordFlows(&agentapi.FlowRecord{RuleId: 2}, &agentapi.FlowRecord{RuleId: 3})
	time.Sleep(300 * time.Millisecond)

	m2 := startManager(t, dir, addr)
	waitFor(t, "agent reconnected", func() bool { h := m2.host(t, "h1"); return h.Connected && h.InSync })
	select {
	case b := <-m2.flows:
		if len(b.Records) != 2 || b.Records[0].RuleId != 2 {
			t.Errorf("flow records after the outage: %+v", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flow records of the outage did not arrive")
	}
	rev := m2.publish(t)
	enf.waitApply(t, rev)
	waitFor(t, "in sync at the new revision", func() bool { h := m2.host(t, "h1"); return h.InSync && h.RealizedRevision == rev })
}

func TestApplyFailureIsReported(t *testing.T) {
	m := startManager(t, t.TempDir(), "127.0.0.1:0")
	cfg := testConfig(m, t.TempDir())
	cfg.BootstrapToken = m.token(t)
	enf := newFake()
	runAgent(t, cfg, enf)
	enf.waitApply(t, 0)

	enf.setFail(errors.New("nft: apply revision 1: no space left"))
	rev := m.publish(t)
	waitFor(t, "the failure reported", func() bool {
		h := m.host(t, "h1")
		return strings.Contains(h.LastError, "no space left") && !h.InSync && h.RealizedRevision == 0
	})
	// Once the data plane recovers, the agent retries on its own.
	enf.setFail(nil)
	enf.waitApply(t, rev)
	waitFor(t, "in sync after the retry", func() bool {
		h := m.host(t, "h1")
		return h.InSync && h.LastError == "" && h.RealizedRevision == rev
	})
}

func TestUninstall(t *testing.T) {
	m := startManager(t, t.TempDir(), "127.0.0.1:0")
	state := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(m, state)
	cfg.BootstrapToken = m.token(t)
	enf := newFake()
	ra := runAgent(t, cfg, enf)
	enf.waitApply(t, 0)
	ra.stop()
	if err := Uninstall(context.Background(), state, enf); err != nil {
		t.Fatal(err)
	}
	if enf.removed != 1 {
		t.Errorf("Remove called %d times", enf.removed)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir still there: %v", err)
	}
}

func TestFlowQueue(t *testing.T) {
	rec := func(id uint32) *agentapi.FlowRecord { return &agentapi.FlowRecord{RuleId: id} }
	ids := func(rs []*agentapi.FlowRecord) (out []uint32) {
		for _, r := range rs {
			out = append(out, r.RuleId)
		}
		return out
	}
	q := newFlowQueue(3)
	q.add([]*agentapi.FlowRecord{rec(1), rec(2)})
	b := q.peek(10)
	if got := ids(b.recs); fmt.Sprint(got) != "[1 2]" || b.dropped != 0 {
		t.Fatalf("peek: %v, dropped %d", got, b.dropped)
	}
	// While the batch is on the wire, the queue overflows: 1 and 2 are
	// dropped, then 3.
	q.add([]*agentapi.FlowRecord{rec(3), rec(4), rec(5), rec(6)})
	q.commit(b)
	if n, dropped := q.len(); n != 3 || dropped != 3 {
		t.Fatalf("after overflow and commit: %d queued, %d dropped; want 3 and 3", n, dropped)
	}
	b = q.peek(2)
	if got := ids(b.recs); fmt.Sprint(got) != "[4 5]" || b.dropped != 3 {
		t.Fatalf("second peek: %v, dropped %d", got, b.dropped)
	}
	q.commit(b)
	if n, dropped := q.len(); n != 1 || dropped != 0 {
		t.Errorf("after second commit: %d queued, %d dropped", n, dropped)
	}
	q.add(make([]*agentapi.FlowRecord, 10))
	if n, dropped := q.len(); n != 3 || dropped != 8 {
		t.Errorf("after a burst larger than the queue: %d queued, %d dropped; want 3 and 8", n, dropped)
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Second)
	prevMax := time.Duration(0)
	for i := range 10 {
		step := b.cur
		d := b.next()
		if d < step/2 || d > step {
			t.Fatalf("attempt %d: wait %s outside [%s, %s]", i, d, step/2, step)
		}
		prevMax = max(prevMax, d)
	}
	if prevMax > time.Second || b.cur != time.Second {
		t.Errorf("backoff exceeded its max: %s, step %s", prevMax, b.cur)
	}
	b.reset()
	if b.cur != 100*time.Millisecond {
		t.Errorf("reset: %s", b.cur)
	}
}
