package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/netlab"
)

// ---------------------------------------------------------------------------
// The binary: built once per test binary run, removed by TestMain.

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// bulkheadBin builds ./cmd/bulkhead from the module root (once) and returns
// the path of the binary.
func bulkheadBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			buildErr = errors.New("not inside the bulkhead module")
			return
		}
		if buildDir, err = os.MkdirTemp("", "bulkhead-systest-"); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(buildDir, "bulkhead")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/bulkhead")
		cmd.Dir = filepath.Dir(gomod)
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "systest: built %s in %s\n", binPath, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("systest: needs root (network namespaces, veths, nftables); run as root, as CI does")
	}
	for _, tool := range []string{"ip", "nft", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("systest: needs %s: %v", tool, err)
		}
	}
}

// ---------------------------------------------------------------------------
// Processes.

// Child processes are started from one goroutine locked to its OS thread
// for the life of the test binary, so that Pdeathsig (which fires when the
// thread that forked dies, not the process) kills them only when the test
// binary itself dies, never because the Go runtime retired a thread.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnc    = make(chan spawnReq)
)

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the binary
			for r := range spawnc {
				r.done <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	spawnc <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// proc is a bulkhead process the test started.
type proc struct {
	name string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // after done
}

func startProc(t *testing.T, name, bin string, env []string, logPath string, args ...string) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := spawn(cmd); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, args: args, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends sig and waits up to grace for the process to end, then kills
// it. It returns how long the process took to end and whether it ended
// within grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) (time.Duration, bool) {
	start := time.Now()
	if !p.running() {
		return 0, true
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return time.Since(start), true
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
	return time.Since(start), false
}

// tail is the end of the process's log, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ---------------------------------------------------------------------------
// The environment: a topology, a manager, one agent per host.

// Port numbers every workload serves (TCP and UDP each, netlab.Serve).
const (
	portAPI   = 8080 // service api: tcp
	portSQL   = 5432 // service sql: tcp
	portDNS   = 5353 // service dns: udp
	portOther = 9999 // no rule names it
)

// Workloads per host: the tier is the name without the host digit.
var tiers = []string{"web", "api", "db"}

type env struct {
	t      *testing.T
	bin    string
	dir    string
	prefix string

	dataDir   string
	apiAddr   string
	agentAddr string
	cliEnv    []string

	topo  *netlab.Topology
	hosts []*netlab.Host
	// wl are the workloads by short name: web1, api1, db1 on h1, web2... on h2.
	wl map[string]*netlab.Workload
	// inv maps a short name to the inventory name discovery gave it.
	inv map[string]string

	mu      sync.Mutex
	manager *proc
	agents  map[string]*proc

	// flowsWired says whether the agent binary collects flow records;
	// dumpFlag whether it has --flow-dump-interval.
	flowsWired, dumpFlag bool
}

// newEnv builds 2 hosts × 3 workloads, starts the manager and one agent per
// host, waits for discovery, tags the discovered workloads, applies the
// test policy and waits until both hosts enforce it.
func newEnv(t *testing.T) *env {
	t.Helper()
	needRoot(t)
	bin := bulkheadBin(t)
	start := time.Now()
	e := &env{t: t, bin: bin, dir: t.TempDir(), wl: map[string]*netlab.Workload{}, inv: map[string]string{}, agents: map[string]*proc{}}
	e.dataDir = filepath.Join(e.dir, "manager")
	e.apiAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.agentAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BULKHEAD_") {
			e.cliEnv = append(e.cliEnv, kv)
		}
	}
	e.cliEnv = append(e.cliEnv,
		"BULKHEAD_SERVER=https://"+e.apiAddr,
		"BULKHEAD_TOKEN_FILE="+filepath.Join(e.dataDir, "admin.token"),
		"BULKHEAD_CA="+filepath.Join(e.dataDir, "ca.crt"),
		"BULKHEAD_CONFIG="+filepath.Join(e.dir, "no-cli-config.yaml"),
	)

	// The topology. Its cleanup is registered before the processes', so
	// it runs after them (t.Cleanup is last in, first out).
	e.prefix = netlab.TestPrefix()
	topo, err := netlab.New(e.prefix)
	if err != nil {
		t.Fatal(err)
	}
	e.topo = topo
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
		if left, _ := netlab.CleanupPrefix(e.prefix); len(left) > 0 {
			t.Errorf("namespaces left after Close: %v", left)
		}
	})
	for i := 1; i <= 2; i++ {
		h, err := topo.AddHost("h" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		e.hosts = append(e.hosts, h)
		for _, tier := range tiers {
			name := tier + strconv.Itoa(i)
			w, err := topo.AddWorkload(h, netlab.WorkloadConfig{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			e.wl[name] = w
			for _, port := range []uint16{portAPI, portSQL, portDNS, portOther} {
				if _, err := w.Serve(port); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	// Processes: stopped (and their logs shown on failure) before the
	// topology goes.
	t.Cleanup(func() {
		e.mu.Lock()
		procs := []*proc{e.manager}
		for _, p := range e.agents {
			procs = append(procs, p)
		}
		e.mu.Unlock()
		for _, p := range procs {
			if p != nil {
				p.stop(syscall.SIGTERM, 5*time.Second)
			}
		}
		if t.Failed() {
			for _, p := range procs {
				if p != nil {
					t.Logf("--- log of %s (%s), last lines:\n%s", p.name, p.log, tail(p.log, 40))
				}
			}
		}
	})

	e.startManager()
	out, _ := exec.Command(bin, "agent", "--help").CombinedOutput()
	// Flow collection is wired into the agent when its help mentions
	// flow records; a short dump interval makes long flows show sooner.
	e.flowsWired = strings.Contains(string(out), "flow records")
	e.dumpFlag = strings.Contains(string(out), "--flow-dump-interval")

	for _, h := range e.hosts {
		var tok api.BootstrapTokenCreated
		e.cliJSON(&tok, "token", "create", "--ttl", "1h", "--host", h.Name)
		if tok.Secret == "" || tok.AgentAddress != e.agentAddr {
			t.Fatalf("token create: %+v (want a secret and agent address %s)", tok, e.agentAddr)
		}
		e.startAgent(h, "--bootstrap-token", tok.Secret)
	}
	e.waitHosts(20*time.Second, func(hs map[string]api.Host) string {
		for _, h := range e.hosts {
			if !hs[h.Name].Connected {
				return h.Name + " not connected"
			}
		}
		return ""
	})
	e.waitDiscovered(20 * time.Second)
	e.waitHosts(10*time.Second, func(hs map[string]api.Host) string {
		for _, h := range e.hosts {
			if n := hs[h.Name].Workloads; n != len(h.Workloads()) {
				return fmt.Sprintf("get hosts: %s has %d workloads, want %d", h.Name, n, len(h.Workloads()))
			}
		}
		return ""
	})
	e.apply("workloads.yaml", e.workloadsYAML())
	e.apply("policy.yaml", e.policyYAML())
	e.waitInSync(20 * time.Second)
	t.Logf("environment ready in %s: prefix %s, manager %s (agents %s)", time.Since(start).Round(time.Millisecond), e.prefix, e.apiAddr, e.agentAddr)
	return e
}

func (e *env) startManager() {
	e.t.Helper()
	p := startProc(e.t, "manager", e.bin, e.cliEnv, filepath.Join(e.dir, "manager.log"),
		"manager", "--data-dir", e.dataDir, "--listen", e.apiAddr, "--agent-listen", e.agentAddr)
	e.mu.Lock()
	e.manager = p
	e.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := e.cliErr("get", "hosts", "-o", "json")
		if err == nil {
			return
		}
		if !p.running() {
			e.t.Fatalf("manager exited: %v\n%s", p.err, tail(p.log, 30))
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("manager not answering after 20s: %v\n%s", err, tail(p.log, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) hostNS(h *netlab.Host) string { return filepath.Join(netlab.RunDir, h.NS.Name) }
func (e *env) stateDir(h *netlab.Host) string {
	return filepath.Join(e.dir, "agent-"+h.Name)
}

// agentArgs are the arguments every start of h's agent shares.
func (e *env) agentArgs(h *netlab.Host) []string {
	args := []string{"agent",
		"--manager", e.agentAddr,
		"--ca", filepath.Join(e.dataDir, "ca.crt"),
		"--state-dir", e.stateDir(h),
		"--host-name", h.Name,
		"--netns", e.hostNS(h),
		"--iface-pattern", netlab.WorkloadIfPrefix + "*",
		"--drift-interval", "2s",
	}
	if e.dumpFlag {
		args = append(args, "--flow-dump-interval", "2s")
	}
	return args
}

func (e *env) startAgent(h *netlab.Host, extra ...string) *proc {
	e.t.Helper()
	p := startProc(e.t, "agent "+h.Name, e.bin, e.cliEnv, filepath.Join(e.dir, "agent-"+h.Name+".log"),
		append(e.agentArgs(h), extra...)...)
	e.mu.Lock()
	e.agents[h.Name] = p
	e.mu.Unlock()
	return p
}

func (e *env) agent(h *netlab.Host) *proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.agents[h.Name]
}

// ---------------------------------------------------------------------------
// The CLI.

func (e *env) cliErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = e.cliEnv
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("bulkhead %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (e *env) cli(args ...string) string {
	e.t.Helper()
	out, err := e.cliErr(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) cliJSON(v any, args ...string) {
	e.t.Helper()
	out := e.cli(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("bulkhead %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (e *env) hostsNow() (map[string]api.Host, error) {
	out, err := e.cliErr("get", "hosts", "-o", "json")
	if err != nil {
		return nil, err
	}
	var hs []api.Host
	if err := json.Unmarshal([]byte(out), &hs); err != nil {
		return nil, fmt.Errorf("get hosts: %w: %s", err, out)
	}
	m := map[string]api.Host{}
	for _, h := range hs {
		m[h.Name] = h
	}
	return m, nil
}

// waitHosts polls `bulkhead get hosts` until cond returns "" and returns
// how long that took.
func (e *env) waitHosts(d time.Duration, cond func(map[string]api.Host) string) time.Duration {
	e.t.Helper()
	start := time.Now()
	why := ""
	for time.Since(start) < d {
		hs, err := e.hostsNow()
		if err != nil {
			why = err.Error()
		} else if why = cond(hs); why == "" {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := e.cliErr("get", "hosts")
	e.t.Fatalf("after %s: %s\n%s", d, why, out)
	return 0
}

// waitInSync waits until every host is connected, in sync, without error,
// and realizes the published revision.
func (e *env) waitInSync(d time.Duration) time.Duration {
	e.t.Helper()
	return e.waitHosts(d, func(hs map[string]api.Host) string {
		for _, h := range e.hosts {
			x, ok := hs[h.Name]
			switch {
			case !ok:
				return h.Name + " not listed"
			case !x.Connected || !x.InSync || x.LastError != "":
				return fmt.Sprintf("%s: connected %v in sync %v error %q", h.Name, x.Connected, x.InSync, x.LastError)
			case x.RealizedRevision != x.PublishedRevision || x.PublishedRevision == 0:
				return fmt.Sprintf("%s: realized %d, published %d", h.Name, x.RealizedRevision, x.PublishedRevision)
			}
		}
		return ""
	})
}

type workloadDoc struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		IPs       []string          `json:"ips"`
		Host      string            `json:"host"`
		Interface string            `json:"interface"`
		Tags      map[string]string `json:"tags"`
	} `json:"spec"`
}

// waitDiscovered waits until `bulkhead get workloads` lists every netlab
// workload on its host and interface with both its addresses, and records
// the names discovery gave them.
func (e *env) waitDiscovered(d time.Duration) {
	e.t.Helper()
	start := time.Now()
	var missing []string
	for time.Since(start) < d {
		out, err := e.cliErr("get", "workloads", "-o", "json")
		if err != nil {
			e.t.Fatal(err)
		}
		var docs []workloadDoc
		if err := json.Unmarshal([]byte(out), &docs); err != nil {
			e.t.Fatalf("get workloads: %v\n%s", err, out)
		}
		missing = nil
		for short, w := range e.wl {
			found := ""
			for _, doc := range docs {
				if doc.Spec.Host == w.Host.Name && doc.Spec.Interface == w.Interface &&
					slices.Contains(doc.Spec.IPs, w.IPv4.String()) && slices.Contains(doc.Spec.IPs, w.IPv6.String()) {
					found = doc.Metadata.Name
				}
			}
			if found == "" {
				missing = append(missing, short)
			} else {
				e.inv[short] = found
			}
		}
		if len(missing) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := e.cliErr("get", "workloads")
	e.t.Fatalf("workloads %v not discovered after %s:\n%s", missing, d, out)
}

func (e *env) apply(name, yaml string) {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.cli("apply", "-f", path, "-m", "systest: "+name)
}

// workloadsYAML tags the discovered workloads (same names, so the apply
// replaces the discovered documents; their host, interface and addresses
// are kept as discovered).
func (e *env) workloadsYAML() string {
	var b strings.Builder
	for _, short := range slices.Sorted(maps.Keys(e.wl)) {
		w := e.wl[short]
		tier := strings.TrimRight(short, "0123456789")
		fmt.Fprintf(&b, `---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: %s}
spec:
  ips: [%s, %s]
  host: %s
  interface: %s
  tags: {app: systest, tier: %s}
`, e.inv[short], w.IPv4, w.IPv6, w.Host.Name, w.Interface, tier)
	}
	return b.String()
}

// policyYAML is the test policy: groups by tag and by CIDR, services, a
// staged rule, allow, drop and reject rules, default drop.
//
//	web-to-api        web -> api   tcp/8080, udp/5353   allow
//	api-to-db         api -> db    tcp/5432             allow
//	ping-from-h2      h2's block -> any   icmp echo     allow
//	api-to-web        api -> web   tcp/8080, udp/5353   drop
//	web-to-db         web -> db    anything             reject
//	db-no-ping        db -> any    icmp echo            reject
//	(staged) allow-everything                           allow, staged: never enforced
//	default                                             drop
func (e *env) policyYAML() string {
	// The CIDR group covers h2's workload block, whatever netlab chose:
	// the /24 and /64 around web2's addresses, checked to hold all of h2's
	// workloads and none of h1's.
	p4 := netip.PrefixFrom(e.wl["web2"].IPv4, 24).Masked()
	p6 := netip.PrefixFrom(e.wl["web2"].IPv6, 64).Masked()
	for short, w := range e.wl {
		in := p4.Contains(w.IPv4) && p6.Contains(w.IPv6)
		if in != (w.Host.Name == "h2") {
			e.t.Fatalf("netlab addressing changed: %s (%s, %s) vs %s, %s", short, w.IPv4, w.IPv6, p4, p6)
		}
	}
	return fmt.Sprintf(`apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: web}
spec: {match: 'app == "systest" && tier == "web"'}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: api}
spec: {match: 'app == "systest" && tier == "api"'}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: db}
spec: {match: 'app == "systest" && tier == "db"'}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: h2-block}
spec: {ips: [%s, %s]}
---
apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: api}
spec: {ports: [tcp/%d]}
---
apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: sql}
spec: {ports: [tcp/%d]}
---
apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: dns}
spec: {ports: [udp/%d]}
---
apiVersion: bulkhead.io/v1
kind: Service
metadata: {name: ping}
spec: {ports: [icmp/8, icmpv6/128]}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: staged}
spec:
  category: Environment
  rules:
  - name: allow-everything
    action: allow
    mode: staged
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: app}
spec:
  category: Application
  rules:
  - {name: web-to-api, sources: [web], destinations: [api], services: [api, dns], action: allow}
  - {name: api-to-db, sources: [api], destinations: [db], services: [sql], action: allow}
  - {name: ping-from-h2, sources: [h2-block], services: [ping], action: allow}
  - {name: api-to-web, sources: [api], destinations: [web], services: [api, dns], action: drop, log: true}
  - {name: web-to-db, sources: [web], destinations: [db], action: reject, log: true}
  - {name: db-no-ping, sources: [db], services: [ping], action: reject}
---
apiVersion: bulkhead.io/v1
kind: DefaultRule
metadata: {name: default}
spec: {action: drop, log: true}
`, p4, p6, portAPI, portSQL, portDNS)
}

// ---------------------------------------------------------------------------
// Probes.

type probe struct {
	src, dst string // short workload names
	v6       bool
	proto    string // tcp, udp, icmp
	port     uint16 // tcp, udp
}

func (p probe) String() string {
	fam := "v4"
	if p.v6 {
		fam = "v6"
	}
	if p.proto == "icmp" {
		return fmt.Sprintf("%s->%s icmp echo %s", p.src, p.dst, fam)
	}
	return fmt.Sprintf("%s->%s %s/%d %s", p.src, p.dst, p.proto, p.port, fam)
}

func (e *env) addrs(p probe) (src, dst netip.Addr) {
	return e.wl[p.src].Addr(p.v6), e.wl[p.dst].Addr(p.v6)
}

// try makes the connection p describes and says what the client saw.
func (e *env) try(p probe, timeout time.Duration) (netlab.Outcome, time.Duration, error) {
	src := e.wl[p.src]
	_, dst := e.addrs(p)
	start := time.Now()
	var o netlab.Outcome
	var err error
	switch p.proto {
	case "tcp":
		o, err = src.ProbeTCP(netip.AddrPortFrom(dst, p.port), timeout)
	case "udp":
		o, err = src.ProbeUDP(netip.AddrPortFrom(dst, p.port), timeout)
	case "icmp":
		o, err = src.ProbeICMP(dst, timeout)
	default:
		err = fmt.Errorf("probe %s: unknown protocol", p)
	}
	return o, time.Since(start), err
}

// eval asks `bulkhead eval` about the flow p makes.
func (e *env) eval(p probe) (api.EvalResponse, error) {
	src, dst := e.addrs(p)
	args := []string{"eval", "--from", src.String(), "--to", dst.String(), "-o", "json"}
	switch {
	case p.proto == "icmp" && p.v6:
		args = append(args, "--proto", "icmpv6", "--icmp-type", "128", "--icmp-code", "0")
	case p.proto == "icmp":
		args = append(args, "--proto", "icmp", "--icmp-type", "8", "--icmp-code", "0")
	default:
		args = append(args, "--proto", p.proto, "--port", strconv.Itoa(int(p.port)))
	}
	var r api.EvalResponse
	out, err := e.cliErr(args...)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return r, fmt.Errorf("eval %s: %w: %s", p, err, out)
	}
	return r, nil
}

// Timeouts: a dropped probe waits probeTimeout; a rejected one must be
// answered well before (rejectWithin).
const (
	probeTimeout = 1500 * time.Millisecond
	rejectWithin = 500 * time.Millisecond
)

// matches says whether what the client saw is what verdict means:
// allow = open, drop = nothing back (timeout), reject = refused or
// unreachable, quickly.
func matches(verdict string, o netlab.Outcome, took time.Duration) bool {
	switch verdict {
	case "allow":
		return o == netlab.Open
	case "drop":
		return o == netlab.Timeout
	case "reject":
		return (o == netlab.Refused || o == netlab.Unreachable) && took < rejectWithin
	}
	return false
}

// parallel runs fn for i in [0, n) on workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// ---------------------------------------------------------------------------
// Flow records.

func (e *env) flows(args ...string) ([]api.Flow, error) {
	out, err := e.cliErr(append([]string{"flows", "-o", "json", "--limit", "10000"}, args...)...)
	if err != nil {
		return nil, err
	}
	var fs []api.Flow
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		return nil, fmt.Errorf("flows: %w: %s", err, out)
	}
	return fs, nil
}

// of says whether flow record f is about the flow p makes.
func (e *env) of(f *api.Flow, p probe) bool {
	src, dst := e.addrs(p)
	if f.Src != src.String() || f.Dst != dst.String() {
		return false
	}
	switch p.proto {
	case "icmp":
		want := "icmp"
		var typ uint8 = 8
		if p.v6 {
			want, typ = "icmpv6", 128
		}
		return f.Proto == want && f.ICMPType != nil && *f.ICMPType == typ
	default:
		return f.Proto == p.proto && f.DstPort == p.port
	}
}

func fmtFlow(f *api.Flow) string {
	return fmt.Sprintf("{%s host=%s %s:%d->%s:%d %s verdict=%s rule=%d start=%s}", f.Kind, f.Host, f.Src, f.SrcPort, f.Dst, f.DstPort, f.Proto, f.Verdict, f.RuleID, f.Start.Format("15:04:05.000"))
}
