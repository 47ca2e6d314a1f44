package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/controlplane"
	"github.com/bulkhead/bulkhead/internal/flow"
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
	flows chan []flow.Record
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
	m := &testManager{dir: dir, st: st, ca: ca, flows: make(chan []flow.Record, 100)}
	m.cp, err = controlplane.New(controlplane.Config{
		Store: st, CA: ca, Log: quiet(), Span: revisionSpan(st),
		Heartbeat: 100 * time.Millisecond, Poll: 50 * time.Millisecond,
		Flows: func(ctx context.Context, host string, recs []flow.Record) error { m.flows <- recs; return nil },
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

// logBuffer is a log destination the agent's goroutines may share.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFlows waits until n flow records arrived, in one batch or more.
func (m *testManager) waitFlows(t *testing.T, n int) []flow.Record {
	t.Helper()
	var got []flow.Record
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case recs := <-m.flows:
			got = append(got, recs...)
		case <-timeout:
			t.Fatalf("%d of %d flow records arrived: %+v", len(got), n, got)
		}
	}
	if len(got) > n {
		t.Errorf("%d flow records arrived, want %d: %+v", len(got), n, got)
	}
	return got
}

// dropRecord is a flow record as the agent's drop reader makes them.
func dropRecord(id string, rule uint32) flow.Record {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return flow.Record{ID: id, Kind: flow.KindDrop, Host: "h1",
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 17, SrcPort: 5353, DstPort: 53,
		SrcWorkload: "h1-bhw1", SrcBytes: 200, SrcPackets: 2,
		Start: now.Add(-time.Second), End: now, Seen: now, RuleID: rule, Verdict: flow.Drop}
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
	return runAgentLog(t, cfg, enf, quiet())
}

func runAgentLog(t *testing.T, cfg Config, enf Enforcer, log *slog.Logger) *runningAgent {
	t.Helper()
	a, err := New(cfg, enf, log)
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

	// Flow records reach the manager, in the host's name.
	sent := dropRecord("h1/drop/1", 7)
	ra.agent.FlowBuffer().Push(sent)
	want := sent
	want.Host = "h1"
	if got := m.waitFlows(t, 1); !reflect.DeepEqual(got[0], want) {
		t.Errorf("flow record arrived as\n%+v\nwant\n%+v", got[0], want)
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
	cfg.FlowBuffer = 3
	cfg.FlowLogInterval = 20 * time.Millisecond
	var logged logBuffer
	enf := newFake()
	ra := runAgentLog(t, cfg, enf, slog.New(slog.NewTextHandler(&logged, nil)))
	enf.waitApply(t, 0)
	buf := ra.agent.FlowBuffer()
	buf.Push(dropRecord("h1/drop/1", 1))
	m.waitFlows(t, 1)

	addr := m.addr
	m.stop()
	// While the manager is away, flow records wait in the agent's buffer;
	// it holds 3, so the oldest of 4 is dropped and counted.
	for i := range 4 {
		buf.Push(dropRecord(fmt.Sprintf("h1/drop/%d", i+2), uint32(i+2)))
	}
	time.Sleep(300 * time.Millisecond)
	if st := ra.agent.FlowStats(); st.Buffer.Len != 3 || st.Buffer.Dropped != 1 || st.Records != 1 {
		t.Errorf("during the outage: %+v", st)
	}
	if l := logged.String(); strings.Count(l, "flow records dropped") != 1 || !strings.Contains(l, "dropped=1 updates=0 ends=0 drops=1 dropped_total=1") {
		t.Errorf("the agent's log should say once that one drop record was dropped:\n%s", l)
	}

	m2 := startManager(t, dir, addr)
	waitFor(t, "agent reconnected", func() bool { h := m2.host(t, "h1"); return h.Connected && h.InSync })
	var rules []uint32
	for _, r := range m2.waitFlows(t, 3) {
		rules = append(rules, r.RuleID)
	}
	if fmt.Sprint(rules) != "[3 4 5]" {
		t.Errorf("rules of the records delivered after the outage: %v, want [3 4 5]", rules)
	}
	if _, dropped, _ := m2.cp.FlowCounts(); dropped != 1 {
		t.Errorf("the manager heard of %d dropped records, want 1", dropped)
	}
	waitFor(t, "the agent to count the delivery", func() bool {
		st := ra.agent.FlowStats()
		return st.Records == 4 && st.Buffer.Len == 0
	})
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

func TestWorkloadIndex(t *testing.T) {
	a, err := New(Config{Manager: "127.0.0.1:1", StateDir: t.TempDir(), HostName: "h1"}, newFake(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	web, db, other := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("10.0.0.9")
	if a.Local(web) || a.Workload(web) != "" {
		t.Error("an address is local before discovery")
	}
	// Discovery knows the addresses at once; the names come with the
	// manager's answer to the report.
	a.inv.set([]*agentapi.Interface{{Name: "bhw1", Ips: []string{"10.0.0.1"}}, {Name: "bhw2", Ips: []string{"fd00::2", "10.0.0.2"}}})
	a.indexWorkloads()
	if !a.Local(web) || !a.Local(db) || a.Local(other) || a.Workload(web) != "" {
		t.Errorf("after discovery: local %v %v %v, workload %q", a.Local(web), a.Local(db), a.Local(other), a.Workload(web))
	}
	a.nameWorkloads(map[string]string{"bhw1": "web-1", "bhw2": "h1-bhw2"})
	mapped := netip.AddrFrom16(web.As16())
	for addr, want := range map[netip.Addr]string{web: "web-1", mapped: "web-1", db: "h1-bhw2", other: ""} {
		if got := a.Workload(addr); got != want {
			t.Errorf("workload of %s: %q, want %q", addr, got, want)
		}
	}
	// An interface that goes away takes its addresses with it.
	a.inv.set([]*agentapi.Interface{{Name: "bhw2", Ips: []string{"fd00::2"}}})
	a.indexWorkloads()
	if a.Local(web) || a.Workload(db) != "h1-bhw2" {
		t.Errorf("after bhw1 left: local %v, workload of db %q", a.Local(web), a.Workload(db))
	}
	if n := testing.AllocsPerRun(100, func() { a.Local(db); a.Workload(db) }); n != 0 {
		t.Errorf("Local and Workload allocate %v times per call; they run per connection", n)
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
