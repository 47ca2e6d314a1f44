package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/manager"
	"github.com/bulkhead/bulkhead/internal/nft"
)

func TestDecodeMark(t *testing.T) {
	for _, tt := range []struct {
		mark    uint32
		rule    uint32
		verdict flow.Verdict
	}{
		{uint32(nft.MakeMark(nft.Verdict{Rule: 42, Action: nft.Allow}, false)), 42, flow.Allow},
		{uint32(nft.MakeMark(nft.Verdict{Rule: nft.MaxRule, Action: nft.Drop, Log: true}, true)), nft.MaxRule, flow.Drop},
		{uint32(nft.MakeMark(nft.Verdict{Rule: 1, Action: nft.Reject}, true)), 1, flow.Reject},
		{0, 0, 0},
		// Rule bits without an action: someone else's mark.
		{42, 0, 0},
	} {
		rule, v := decodeMark(tt.mark)
		if rule != tt.rule || v != tt.verdict {
			t.Errorf("mark %#x: rule %d %v, want %d %v", tt.mark, rule, v, tt.rule, tt.verdict)
		}
	}
}

// TestDumpFilter checks that the conntrack dump filter keeps exactly the
// allowed connections, whatever their rule, point and log flag.
func TestDumpFilter(t *testing.T) {
	if m := nft.Mark(dumpMask); m.Rule() != 0 || m.Log() || m.Ingress() || m.Action() != nft.Allow|nft.Drop|nft.Reject {
		t.Errorf("dump mask %#x is not the action bits alone: %v", dumpMask, m)
	}
	for _, a := range []nft.Action{nft.Allow, nft.Drop, nft.Reject} {
		for _, v := range []nft.Verdict{{Rule: 1, Action: a}, {Rule: nft.MaxRule, Action: a, Log: true}} {
			for _, ingress := range []bool{false, true} {
				m := uint32(nft.MakeMark(v, ingress))
				if kept := m&dumpMask == dumpMark; kept != (a == nft.Allow) {
					t.Errorf("%v: kept by the dump filter: %v", nft.Mark(m), kept)
				}
			}
		}
	}
}

func TestConntrackSysctls(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and writes its sysctls")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip in PATH")
	}
	if _, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_acct"); err != nil {
		t.Skipf("needs the nf_conntrack module: %v", err)
	}
	id := make([]byte, 3)
	rand.Read(id)
	name := "bhcli" + hex.EncodeToString(id)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	read := func(key string) string {
		out, err := exec.Command("ip", "netns", "exec", name, "cat", "/proc/sys/net/netfilter/"+key).CombinedOutput()
		if err != nil {
			t.Fatalf("read %s in %s: %v: %s", key, name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	before, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_timestamp")
	if err != nil {
		t.Fatal(err)
	}

	if err := setConntrackSysctls("/run/netns/" + name); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
		if v := read(key); v != "1" {
			t.Errorf("%s in the namespace: %s, want 1", key, v)
		}
	}
	// Only the managed namespace changed.
	if after, _ := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_timestamp"); string(after) != string(before) {
		t.Errorf("the test's own namespace changed: timestamp %q, was %q", after, before)
	}
	if err := setConntrackSysctls("/run/netns/nosuch-" + name); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("missing namespace: %v", err)
	}
}

func needNetNS(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, nft tables and reads conntrack")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s in PATH", tool)
		}
	}
}

func sh(t *testing.T, stdin, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestAgentFlowsFromKernel runs the agent's flow sources as 'bulkhead
// agent' starts them, on a host namespace with one workload, against a real
// manager: a connection the data plane allowed and packets it dropped,
// marked the way internal/nft marks them, come out of GET /api/v1/flows
// with their rule, verdict, workload and counters.
//
//	workload netns: eth0 10.99.0.2 -- bhw0 (host netns: 10.99.0.1, 10.99.0.3)
func TestAgentFlowsFromKernel(t *testing.T) {
	needNetNS(t, "ip", "nft", "ping")
	id := make([]byte, 3)
	rand.Read(id)
	hostNS, wlNS := "bhah"+hex.EncodeToString(id), "bhaw"+hex.EncodeToString(id)
	for _, ns := range []string{hostNS, wlNS} {
		sh(t, "", "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh(t, "", "ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh(t, "", "ip", "-n", hostNS, "link", "add", "bhw0", "type", "veth", "peer", "name", "eth0", "netns", wlNS)
	sh(t, "", "ip", "-n", hostNS, "addr", "add", "10.99.0.1/24", "dev", "bhw0")
	sh(t, "", "ip", "-n", hostNS, "addr", "add", "10.99.0.3/24", "dev", "bhw0")
	sh(t, "", "ip", "-n", wlNS, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	sh(t, "", "ip", "-n", hostNS, "link", "set", "bhw0", "up")
	sh(t, "", "ip", "-n", wlNS, "link", "set", "eth0", "up")
	// The host route through the interface is how discovery finds the
	// workload's address.
	sh(t, "", "ip", "-n", hostNS, "route", "add", "10.99.0.2/32", "dev", "bhw0")
	allow := uint32(nft.MakeMark(nft.Verdict{Rule: 42, Action: nft.Allow}, true))
	drop := uint32(nft.MakeMark(nft.Verdict{Rule: 99, Action: nft.Drop}, true))
	sh(t, fmt.Sprintf(`
table inet bhclitest {
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		ct state established,related accept
		iifname "bhw0" ip daddr 10.99.0.1 icmp type echo-request ct mark set %#x accept
		iifname "bhw0" ip daddr 10.99.0.3 meta mark set %#x log group %d drop
	}
}
`, allow, drop, nft.DefaultLogGroup), "ip", "netns", "exec", hostNS, "nft", "-f", "-")

	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := manager.New(manager.Config{DataDir: dir, Listen: ln.Addr().String(), AgentListen: "127.0.0.1:0"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(served) }()
	t.Cleanup(func() { cancel(); <-served; srv.Close() })
	for srv.AgentAddr() == "" {
		time.Sleep(10 * time.Millisecond)
	}
	secret, _, err := srv.ControlPlane().CreateBootstrapToken(ctx, "hv-1", "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := os.ReadFile(filepath.Join(dir, manager.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := apiclient.New("https://"+ln.Addr().String(), strings.TrimSpace(string(admin)), srv.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}

	nsPath := "/run/netns/" + hostNS
	a, err := agent.New(agent.Config{
		Manager: srv.AgentAddr(), BootstrapToken: secret, CAFingerprint: srv.CA().Fingerprint(),
		StateDir: t.TempDir(), HostName: "hv-1", NetNS: nsPath,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, FlowInterval: 50 * time.Millisecond,
	}, agent.NewDryRun(quiet), quiet)
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(ctx)
	agentDone, sourcesDone := make(chan struct{}), make(chan struct{})
	go func() { a.Run(actx); close(agentDone) }()
	go func() {
		runFlowSources(actx, a, nsPath, flowFlags{dumpInterval: 200 * time.Millisecond, nflogGroup: nft.DefaultLogGroup}, quiet)
		close(sourcesDone)
	}()
	t.Cleanup(func() { stopAgent(); <-agentDone; <-sourcesDone })

	wl := netip.MustParseAddr("10.99.0.2")
	deadline := time.Now().Add(10 * time.Second)
	for a.Workload(wl) != "hv-1-bhw0" {
		if time.Now().After(deadline) {
			t.Fatalf("the agent never learnt the workload of %s: %q", wl, a.Workload(wl))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, key := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
		out, _ := exec.Command("ip", "netns", "exec", hostNS, "cat", "/proc/sys/net/netfilter/"+key).Output()
		if strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s in the host namespace: %q, want 1", key, out)
		}
	}

	// Until both records are in, the workload pings the host (allowed,
	// rule 42) and its other address (dropped, rule 99): the first pings
	// may come before the sources listen.
	var allowed, dropped *api.Flow
	deadline = time.Now().Add(30 * time.Second)
	for allowed == nil || dropped == nil {
		if time.Now().After(deadline) {
			t.Fatalf("flow records did not arrive: allowed %+v, dropped %+v", allowed, dropped)
		}
		exec.Command("ip", "netns", "exec", wlNS, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.99.0.1").Run()
		exec.Command("ip", "netns", "exec", wlNS, "ping", "-c", "1", "-W", "1", "10.99.0.3").Run()
		flows, err := c.Flows(ctx, apiclient.FlowQuery{Host: "hv-1"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range flows {
			f := &flows[i]
			switch {
			case f.RuleID == 42 && f.SrcPackets >= 2 && f.DstPackets >= 2:
				allowed = f
			case f.RuleID == 99:
				dropped = f
			}
		}
	}
	if allowed.Verdict != "allow" || allowed.Proto != "icmp" || allowed.Src != "10.99.0.2" || allowed.Dst != "10.99.0.1" ||
		allowed.SrcWorkload != "hv-1-bhw0" || allowed.DstWorkload != "" || allowed.SrcBytes == 0 || allowed.DstBytes == 0 ||
		allowed.ICMPType == nil || *allowed.ICMPType != 8 || !strings.HasPrefix(allowed.ID, "hv-1/") || allowed.Start.IsZero() {
		t.Errorf("allowed flow: %+v", allowed)
	}
	if dropped.Kind != "drop" || dropped.Verdict != "drop" || dropped.Proto != "icmp" || dropped.Src != "10.99.0.2" || dropped.Dst != "10.99.0.3" ||
		dropped.SrcWorkload != "hv-1-bhw0" || dropped.SrcPackets == 0 {
		t.Errorf("dropped flow: %+v", dropped)
	}
}
