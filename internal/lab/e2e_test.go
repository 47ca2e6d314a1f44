package lab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/lab"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// TestLabEndToEnd drives the bulkhead binary as a user would: lab up with
// three hosts, the inventory and the flow records that reach the manager,
// a zero-trust policy checked with real connections from inside the
// workloads, and lab down, after which nothing the lab made is left.
func TestLabEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces, veth pairs and nftables tables")
	}
	if testing.Short() {
		t.Skip("builds the binary and runs the whole lab for a minute or two")
	}
	for _, tool := range []string{"ip", "nft", "curl", "bash", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{t: t, root: root, dir: filepath.Join(t.TempDir(), "lab"), prefix: "bhE" + strconv.Itoa(os.Getpid()%100000)}
	e.env = append(os.Environ(), "BULKHEAD_CONFIG="+filepath.Join(t.TempDir(), "cli.yaml"))

	start := time.Now()
	e.bin = filepath.Join(t.TempDir(), "bulkhead")
	build := exec.Command("go", "build", "-o", e.bin, "./cmd/bulkhead")
	build.Dir, build.Env = root, append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("go build: %s", time.Since(start).Round(time.Millisecond))

	before := e.snapshot()
	downDone := false
	t.Cleanup(func() {
		if downDone {
			return
		}
		if out, err := e.cmd("lab", "down", "--dir", e.dir, "--prefix", e.prefix); err != nil {
			t.Logf("cleanup: lab down: %v\n%s", err, out)
		}
		netlab.CleanupPrefix(e.prefix + "-")
	})

	start = time.Now()
	out, err := e.cmd("lab", "up", "--dir", e.dir, "--prefix", e.prefix, "--hosts", "3",
		"--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	t.Logf("lab up: %s", time.Since(start).Round(time.Millisecond))
	st, err := lab.LoadState(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	if e.client, err = st.Client(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"BULKHEAD_SERVER=" + st.Manager.URL, "BULKHEAD_TOKEN_FILE=" + st.Manager.TokenFile, "BULKHEAD_CA=" + st.Manager.CA} {
		e.env = append(e.env, v)
	}
	t.Run("Status", e.testStatus)
	t.Run("UpAgain", e.testUpAgain)
	t.Run("Inventory", e.testInventory)
	t.Run("Flows", e.testFlows)
	t.Run("DiscoverRecommend", e.testDiscoverRecommend)
	t.Run("Console", e.testConsole)
	t.Run("L7", e.testL7)
	t.Run("FQDN", e.testFQDN)
	t.Run("Users", e.testUsers)
	t.Run("IDS", e.testIDS)
	t.Run("Policy", e.testPolicy)

	start = time.Now()
	if out, err := e.cmd("lab", "down", "--dir", e.dir); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	downDone = true
	t.Logf("lab down: %s", time.Since(start).Round(time.Millisecond))
	after := e.snapshot()
	for _, what := range []struct {
		name          string
		before, after []string
		// ours tells what the lab could have made from what a test of
		// another package, running at the same time, could have: only
		// the former fail the test.
		ours func(string) bool
	}{
		{"namespaces (ip netns) of the lab's prefix", before.netns, after.netns, nil},
		{"links of the root namespace (ip link)", before.links, after.links, func(l string) bool {
			return strings.HasPrefix(l, netlab.WorkloadIfPrefix) || strings.HasPrefix(l, "ul") || l == netlab.WorkloadIf || l == "br0" || strings.HasPrefix(l, e.prefix)
		}},
		{"nftables tables of the root namespace", before.tables, after.tables, func(t string) bool { return strings.Contains(t, "bulkhead") }},
		{"processes of the lab", before.procs, after.procs, nil},
		{"files in /etc/netns of the lab's prefix", before.etc, after.etc, nil},
	} {
		for _, x := range minus(what.after, what.before) {
			if what.ours == nil || what.ours(x) {
				t.Errorf("after lab down, %s: %q was not there before", what.name, x)
			} else {
				t.Logf("after lab down, %s: %q was not there before (not the lab's: another test's?)", what.name, x)
			}
		}
	}
	if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(e.dir)
		t.Errorf("after lab down, %s still exists (%d entries)", e.dir, len(ents))
	}
}

type e2e struct {
	t      *testing.T
	root   string
	bin    string
	dir    string
	prefix string
	env    []string
	st     *lab.State
	client *apiclient.Client
}

// checkAllowed connects from inside workloads along the scenario's
// application flows; each must connect (and HTTP answer 200).
func (e *e2e) checkAllowed(t *testing.T) {
	t.Helper()
	tcp := func(from, host string, port int) (int, string) {
		return e.exec(from, "timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", host, port))
	}
	curl := func(from string, args ...string) (int, string) {
		return e.exec(from, append([]string{"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", e.st.LabCA}, args...)...)
	}
	allowed := []struct {
		name string
		http bool // the output is an HTTP status, which must be 200
		run  func() (int, string)
	}{
		{"shopper1 -> www (web1) http", true, func() (int, string) { return curl("shopper1", "http://www.lab.test/") }},
		{"shopper1 -> www (web1) https", true, func() (int, string) { return curl("shopper1", "https://www.lab.test/") }},
		{"shopper1 -> web1 http over IPv6", true, func() (int, string) { return curl("shopper1", "-6", "http://web1.lab.test/") }},
		{"partner1 -> api1:8080", true, func() (int, string) { return curl("partner1", "http://api.lab.test:8080/api/products") }},
		{"legacy1 -> web1:8443", true, func() (int, string) { return curl("legacy1", "https://web1.lab.test:8443/products") }},
		{"api1 -> db1:5432", false, func() (int, string) { return tcp("api1", "db1.lab.test", 5432) }},
		{"api1 -> cache1:6379", false, func() (int, string) { return tcp("api1", "10.77.3.20", 6379) }},
		{"jump1 -> db1 ssh", false, func() (int, string) { return tcp("jump1", "db1.lab.test", 22) }},
		{"rdsh1 -> dir1 ldap", false, func() (int, string) { return tcp("rdsh1", "dir1.lab.test", 389) }},
	}
	for _, c := range allowed {
		code, out := c.run()
		if code != 0 || c.http && strings.TrimSpace(out) != "200" {
			t.Errorf("%s: exit %d, output %q; want a connection (and HTTP 200)", c.name, code, out)
		}
	}
}

// cmdStdout runs the binary and returns its standard output only.
func (e *e2e) cmdStdout(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, e.bin, args...)
	c.Env, c.Dir = e.env, e.root
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// cmd runs the binary and returns its combined output.
func (e *e2e) cmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, e.bin, args...)
	c.Env, c.Dir = e.env, e.root
	out, err := c.CombinedOutput()
	return string(out), err
}

// exec runs a command in a workload with `bulkhead lab exec` and returns
// its exit status and output; -1 if it could not run. Safe to call from
// several goroutines.
func (e *e2e) exec(workload string, args ...string) (int, string) {
	out, err := e.cmd(append([]string{"lab", "exec", "--dir", e.dir, workload, "--"}, args...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out
	case errors.As(err, &ee):
		return ee.ExitCode(), out
	}
	return -1, fmt.Sprintf("lab exec %s %v: %v: %s", workload, args, err, out)
}

type snapshot struct{ netns, links, tables, procs, etc []string }

func (e *e2e) snapshot() snapshot {
	var s snapshot
	for _, n := range lines(e.t, "ip", "netns", "list") {
		if f := strings.Fields(n); len(f) > 0 && strings.HasPrefix(f[0], e.prefix+"-") {
			s.netns = append(s.netns, f[0])
		}
	}
	for _, l := range lines(e.t, "ip", "-o", "link", "show") {
		// "7: name@peer: <FLAGS> ..." -> name
		if f := strings.Fields(l); len(f) > 1 {
			s.links = append(s.links, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	s.tables = lines(e.t, "nft", "list", "tables")
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && (strings.Contains(string(b), e.dir) || strings.Contains(string(b), e.prefix+"-")) {
			s.procs = append(s.procs, ent.Name()+" "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	etc, _ := os.ReadDir(lab.EtcNetns)
	for _, ent := range etc {
		if strings.HasPrefix(ent.Name(), e.prefix+"-") {
			s.etc = append(s.etc, ent.Name())
		}
	}
	return s
}

func lines(t *testing.T, name string, args ...string) []string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	var l []string
	for _, s := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if s != "" {
			l = append(l, s)
		}
	}
	return l
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func (e *e2e) testStatus(t *testing.T) {
	out, err := e.cmd("lab", "status", "--dir", e.dir, "-o", "json")
	if err != nil {
		t.Fatalf("lab status: %v\n%s", err, out)
	}
	var s lab.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("lab status -o json: %v\n%s", err, out)
	}
	if !s.Healthy {
		t.Errorf("lab status: not healthy: %q", s.Problems)
	}
	if len(s.Hosts) != 3 {
		t.Errorf("lab status: %d hosts, want 3", len(s.Hosts))
	}
	for _, h := range s.Hosts {
		if !h.AgentRunning || !h.Connected {
			t.Errorf("host %s: agent running %v, connected %v", h.Name, h.AgentRunning, h.Connected)
		}
	}
	want := map[string]struct {
		ips  []string
		tags map[string]string
	}{
		"web1":   {[]string{"10.77.1.10", "fd00:77:0:1::10"}, map[string]string{"app": "shop", "tier": "web", "env": "prod"}},
		"db1":    {[]string{"10.77.3.10"}, map[string]string{"app": "shop", "tier": "db", "env": "prod"}},
		"cache1": {[]string{"10.77.3.20"}, map[string]string{}},
	}
	seen := 0
	for _, w := range s.Workloads {
		if w.Host == "" || w.NetNS == "" {
			t.Errorf("workload %s: host %q, namespace %q", w.Name, w.Host, w.NetNS)
		}
		for _, a := range w.Apps {
			if !a.Running {
				t.Errorf("app %s/%s is not running; log:\n%s", w.Name, a.Name, readTail(a.Log))
			}
		}
		if x, ok := want[w.Name]; ok {
			seen++
			if !slices.Equal(w.IPs, x.ips) || !mapsEqual(w.Tags, x.tags) {
				t.Errorf("workload %s: ips %v tags %v, want %v %v", w.Name, w.IPs, w.Tags, x.ips, x.tags)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("lab status shows %d of the workloads %v", seen, want)
	}
}

func (e *e2e) testUpAgain(t *testing.T) {
	out, err := e.cmd("lab", "up", "--dir", e.dir, "--prefix", e.prefix, "--hosts", "3",
		"--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("second lab up: %v\n%s", err, out)
	}
	if !strings.Contains(out, "nothing to do") {
		t.Errorf("second lab up did not say it had nothing to do:\n%s", out)
	}
	st, err := lab.LoadState(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Manager.Proc.PID != e.st.Manager.Proc.PID || !st.Created.Equal(e.st.Created) {
		t.Errorf("second lab up rebuilt the lab (manager pid %d -> %d)", e.st.Manager.Proc.PID, st.Manager.Proc.PID)
	}
}

// The manager's inventory holds the scenario's workloads with their tags,
// bound to the interfaces the agents found: no "HOST-INTERFACE" duplicates.
func (e *e2e) testInventory(t *testing.T) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		raws, err := e.client.List(context.Background(), policy.KindWorkload, 0)
		if err != nil {
			t.Fatal(err)
		}
		var problems []string
		got := map[string]*policy.Workload{}
		for _, r := range raws {
			var w policy.Workload
			if err := json.Unmarshal(r, &w); err != nil {
				t.Fatal(err)
			}
			got[w.Metadata.Name] = &w
		}
		for _, sw := range e.st.Workloads {
			w := got[sw.Name]
			if w == nil {
				problems = append(problems, "no workload "+sw.Name)
				continue
			}
			wantIPs := []string{sw.IPv4}
			if sw.IPv6 != "" {
				wantIPs = append(wantIPs, sw.IPv6)
			}
			if !slices.Equal(w.Spec.IPs, wantIPs) || w.Spec.Host != sw.Host || w.Spec.Interface != sw.Interface || !mapsEqual(w.Spec.Tags, sw.Tags) {
				problems = append(problems, fmt.Sprintf("%s: ips %v host %s interface %s tags %v; want %v %s %s %v",
					sw.Name, w.Spec.IPs, w.Spec.Host, w.Spec.Interface, w.Spec.Tags, wantIPs, sw.Host, sw.Interface, sw.Tags))
			}
			// The agent's report reached the workload the lab declared.
			if w.Spec.Facts["mac"] == "" {
				problems = append(problems, sw.Name+": no MAC from the agent's report yet")
			}
		}
		if len(got) != len(e.st.Workloads) {
			var names []string
			for n := range got {
				if e.st.Workload(n) == nil {
					names = append(names, n)
				}
			}
			problems = append(problems, fmt.Sprintf("%d workloads in the inventory, want %d (extra: %v)", len(got), len(e.st.Workloads), names))
		}
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory:\n  %s", strings.Join(problems, "\n  "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// wantPairs are the workload pairs every lab application's first round
// makes: one or more per client, and the servers' own calls.
var wantPairs = []lab.Pair{
	{Src: "shopper1", Dst: "dns1"}, {Src: "shopper1", Dst: "web1"},
	{Src: "shopper2", Dst: "web2"},
	{Src: "partner1", Dst: "api1"},
	{Src: "legacy1", Dst: "web1"},
	{Src: "report1", Dst: "db1"}, {Src: "report1", Dst: "cache1"},
	{Src: "jump1", Dst: "web1"}, {Src: "jump1", Dst: "web2"},
	{Src: "rdsh1", Dst: "hr1"}, {Src: "rdsh1", Dst: "dir1"},
	{Src: "mon1", Dst: "dns1"}, {Src: "mon1", Dst: "dir1"},
	{Src: "web1", Dst: "api1"}, {Src: "web1", Dst: "dir1"}, {Src: "web2", Dst: "api1"},
	{Src: "api1", Dst: "db1"}, {Src: "api1", Dst: "cache1"},
	{Src: "attacker", Dst: "web1"},
}

// Flow records from every application pair reach the manager, and the
// workload names on them are those of the records' addresses.
func (e *e2e) testFlows(t *testing.T) {
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	set := &lab.PairSet{}
	since := e.st.Created
	var missing []lab.Pair
	for {
		polled := time.Now()
		if err := e.st.CollectFlows(context.Background(), since, set); err != nil {
			t.Fatal(err)
		}
		since = polled.Add(-time.Minute)
		missing = missing[:0]
		for _, p := range wantPairs {
			if set.Pairs[p] == 0 {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			t.Logf("flow records of %d workload pairs after %s, every application pair among them", len(set.Pairs), time.Since(start).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, no flow records for %v (got %d pairs)", time.Since(start).Round(time.Second), missing, len(set.Pairs))
		}
		time.Sleep(2 * time.Second)
	}
	for _, w := range set.Wrong {
		t.Error(w)
	}
	t.Run("BothEndsNamed", func(t *testing.T) {
		if set.Unnamed > 0 {
			t.Errorf("%d of %d flow records between lab workloads leave a workload name empty: the manager names both ends from the inventory", set.Unnamed, set.Records)
		}
	})
}

// A zero-trust policy: the shop and the shared services keep working, the
// attacker's lateral moves are dropped. Checked with real connections from
// inside the workloads.
func (e *e2e) testPolicy(t *testing.T) {
	out, err := e.cmd("apply", "-f", filepath.Join(e.root, "examples", "lab-shop-policy.yaml"), "-m", "e2e: zero trust for the shop")
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	revs, err := e.client.Revisions(context.Background(), 1)
	if err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	e.waitRealized(t, revs[0].Number)
	policyAt := time.Now()

	// tcp probes with bash's /dev/tcp: 0 connected, 1 refused or reset,
	// 124 no answer within the timeout (dropped).
	tcp := func(from, host string, port int) (int, string) {
		return e.exec(from, "timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", host, port))
	}
	e.checkAllowed(t)
	// Addresses, not names: the attacker may not even ask the DNS server.
	dropped := []struct {
		name, from, host string
		port             int
	}{
		{"attacker -> db1:5432", "attacker", "10.77.3.10", 5432},
		{"attacker -> web1 ssh", "attacker", "10.77.1.10", 22},
		{"attacker -> api1 ssh", "attacker", "10.77.2.10", 22},
		{"attacker -> web1 http", "attacker", "10.77.1.10", 80},
		{"attacker -> cache1:6379", "attacker", "10.77.3.20", 6379},
		{"shopper1 -> db1:5432 (default rule)", "shopper1", "10.77.3.10", 5432},
		{"partner1 -> db1 ssh (default rule)", "partner1", "10.77.3.10", 22},
	}
	// Each probe waits out its timeout: run them together.
	var wg sync.WaitGroup
	for _, c := range dropped {
		wg.Go(func() {
			if code, out := tcp(c.from, c.host, c.port); code != 124 {
				t.Errorf("%s: exit %d (%q); want 124, the connection attempt dropped", c.name, code, out)
			}
		})
	}
	wg.Wait()
	// The applications keep working: partner1 calls the API every 3s.
	time.Sleep(4 * time.Second)
	log := e.appLog(t, "partner1", "partner1-api-caller")
	ok := false
	for _, l := range strings.Split(log, "\n") {
		if ts, found := strings.CutPrefix(l, "time="); found {
			at, err := time.Parse(time.RFC3339Nano, strings.Fields(ts)[0])
			if err == nil && at.After(policyAt) && strings.Contains(l, "status=20") {
				ok = true
			}
		}
	}
	if !ok {
		t.Errorf("partner1's API calls did not succeed after the policy; log:\n%s", readTailString(log, 10))
	}
	// The attacker's drops reach the manager with the quarantine rule.
	deadline := time.Now().Add(30 * time.Second)
	for {
		flows, err := e.client.Flows(context.Background(), apiclient.FlowQuery{From: "attacker", Verdict: "drop", Since: policyAt.Add(-time.Second).Format(time.RFC3339), Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(flows) > 0 {
			if flows[0].SrcWorkload != "attacker" || flows[0].RuleID < 100 {
				t.Errorf("drop record %+v: want source attacker and the quarantine rule", flows[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no drop records from the attacker within 30s of the policy")
			break
		}
		time.Sleep(time.Second)
	}
}

func (e *e2e) appLog(t *testing.T, workload, name string) string {
	for _, a := range e.st.Apps {
		if a.Workload == workload && a.Name == name {
			b, err := os.ReadFile(a.Proc.Log)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("no app %s/%s", workload, name)
	return ""
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return readTailString(string(b), 10)
}

func readTailString(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
