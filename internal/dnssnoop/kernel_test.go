package dnssnoop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/google/nftables"
)

// kernelLab is a host namespace forwarding between a client workload and
// the lab's DNS server in another workload, with the capture table, a
// snooper and the sets running against the host namespace, as the agent
// would run them.
type kernelLab struct {
	topo     *netlab.Topology
	host     *netlab.Host
	cli, dns *netlab.Workload
	cache    *Cache
	snoop    *Snooper
	sets     *Sets

	mu     sync.Mutex
	shared []string
}

const testTable = "bhtest_fqdn"

func newKernelLab(t *testing.T) *kernelLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dnssnoop: needs root (network namespaces, nftables, NFLOG)")
	}
	if _, err := os.Stat("/usr/bin/dig"); err != nil {
		t.Skip("dnssnoop: needs dig (dnsutils)")
	}
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	// Registered before anything else can fail: the namespaces (and the
	// tables in them) go whatever happens.
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	l := &kernelLab{topo: topo}
	if l.host, err = topo.AddHost("h1"); err != nil {
		t.Fatal(err)
	}
	if l.cli, err = topo.AddWorkload(l.host, netlab.WorkloadConfig{Name: "cli"}); err != nil {
		t.Fatal(err)
	}
	if l.dns, err = topo.AddWorkload(l.host, netlab.WorkloadConfig{Name: "dns"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	// The lab's DNS application, inside the dns workload.
	cfg := apps.DNSConfig{
		Port: 53,
		Zones: []apps.Zone{
			{Name: "example.test", TTL: 2, Records: []apps.Record{
				{Name: "www", CNAME: "edge.cdn.test."},
				{Name: "other", A: []string{"192.0.2.99"}},
				{Name: "s1", A: []string{"192.0.2.50"}},
				{Name: "s2", A: []string{"192.0.2.50"}},
				{Name: "s3", A: []string{"192.0.2.50"}},
			}},
			{Name: "cdn.test", TTL: 2, Records: []apps.Record{
				{Name: "edge", A: []string{"192.0.2.10"}, AAAA: []string{"2001:db8::10"}},
			}},
		},
		Moves: []apps.Move{{Name: "moving.example.test", TTL: 2, Every: apps.Duration(3 * time.Second), Targets: []string{"192.0.2.21", "192.0.2.22"}}},
	}
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan struct{}, 2)
	cfg.Ready = func(string, net.Addr) { ready <- struct{}{} }
	dnsErr := make(chan error, 1)
	wg.Go(func() { dnsErr <- l.dns.NS.Do(func() error { return apps.RunDNS(ctx, cfg) }) })
	for range 2 {
		select {
		case <-ready:
		case err := <-dnsErr:
			t.Fatalf("dns server: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("dns server did not start")
		}
	}

	// The snooping side, in the host namespace.
	fd := l.host.NS.Fd()
	capCfg := CaptureConfig{NetNS: fd, OutIfPrefix: netlab.WorkloadIfPrefix}
	if err := InstallCapture(capCfg); err != nil {
		t.Fatal(err)
	}
	if l.cache, err = NewCache(CacheConfig{Grace: time.Second, MaxNamesPerIP: 2, OnShared: func(ip netip.Addr, name string, n int) {
		l.mu.Lock()
		l.shared = append(l.shared, fmt.Sprintf("%s %s %d", ip, name, n))
		l.mu.Unlock()
	}}); err != nil {
		t.Fatal(err)
	}
	if l.sets, err = NewSets(SetsConfig{NetNS: fd, Table: testTable, Groups: []SetGroup{
		{Set4: "fqdn0_v4", Set6: "fqdn0_v6", FQDNs: []string{"*.example.test"}},
		{Set4: "fqdn1_v4", Set6: "fqdn1_v6", FQDNs: []string{"other.example.test", "*.cdn.test"}},
	}}, l.cache); err != nil {
		t.Fatal(err)
	}
	if err := l.sets.Ensure(); err != nil {
		t.Fatal(err)
	}
	if l.snoop, err = NewSnooper(SnooperConfig{
		NetNS: fd, Resolvers: []netip.Prefix{netip.PrefixFrom(l.dns.IPv4, 32), netip.PrefixFrom(l.dns.IPv6, 128)},
		ExpireEvery: 500 * time.Millisecond, OnChange: l.sets.Notify,
	}, l.cache); err != nil {
		t.Fatal(err)
	}
	snoopErr := make(chan error, 1)
	wg.Go(func() { snoopErr <- l.snoop.Run(ctx) })
	wg.Go(func() { l.sets.Run(ctx) })
	select {
	case <-l.snoop.Ready():
	case err := <-snoopErr:
		t.Fatalf("snooper: %v", err)
	}
	return l
}

// dig runs the real dig in the client workload and returns its short answer.
func (l *kernelLab) dig(t *testing.T, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.cli.NS.Exec(ctx, "dig", append([]string{"@" + l.dns.IPv4.String(), "+short", "+tries=1", "+time=2"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

type element struct {
	addr             netip.Addr
	timeout, expires time.Duration
}

// elements lists a set of the test table as the kernel holds it.
func (l *kernelLab) elements(t *testing.T, set string) map[netip.Addr]element {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(l.host.NS.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	s, err := c.GetSetByName(&nftables.Table{Name: testTable, Family: nftables.TableFamilyINet}, set)
	if err != nil {
		t.Fatalf("set %s: %v", set, err)
	}
	es, err := c.GetSetElements(s)
	if err != nil {
		t.Fatalf("set %s: %v", set, err)
	}
	out := map[netip.Addr]element{}
	for _, e := range es {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			t.Fatalf("set %s: key %x", set, e.Key)
		}
		out[a] = element{a, e.Timeout, e.Expires}
	}
	return out
}

// waitFor polls until cond holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKernelSnoopAndSets(t *testing.T) {
	l := newKernelLab(t)
	ip4, ip6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")

	// UDP: a CNAME chain. The address lands in the *.example.test set (via
	// www) and the *.cdn.test set (via edge), with TTL 2 + grace 1.
	got := l.dig(t, "www.example.test", "A")
	if strings.Join(got, " ") != "edge.cdn.test. 192.0.2.10" {
		t.Fatalf("dig: %q", got)
	}
	answered := time.Now()
	var e element
	if !waitFor(2*time.Second, func() bool { var ok bool; e, ok = l.elements(t, "fqdn0_v4")[ip4]; return ok }) {
		t.Fatalf("%s not in fqdn0_v4: %v (snooper %+v, cache %+v, sets %+v)", ip4, l.elements(t, "fqdn0_v4"), l.snoop.Stats(), l.cache.Stats(), l.sets.Stats())
	}
	if e.timeout <= 2*time.Second || e.timeout > 3*time.Second || e.expires <= 0 || e.expires > e.timeout {
		t.Errorf("element %+v: want a timeout in (2s, 3s] and an expiry under it", e)
	}
	if _, ok := l.elements(t, "fqdn1_v4")[ip4]; !ok {
		t.Errorf("%s not in fqdn1_v4 (edge.cdn.test)", ip4)
	}
	if n := len(l.elements(t, "fqdn0_v6")); n != 0 {
		t.Errorf("fqdn0_v6 has %d elements before any AAAA", n)
	}

	// TCP: the same chain for AAAA over a TCP connection.
	if got := l.dig(t, "+tcp", "www.example.test", "AAAA"); strings.Join(got, " ") != "edge.cdn.test. 2001:db8::10" {
		t.Fatalf("dig +tcp: %q", got)
	}
	if !waitFor(2*time.Second, func() bool { _, ok := l.elements(t, "fqdn0_v6")[ip6]; return ok }) {
		t.Fatalf("%s not in fqdn0_v6 after a TCP answer (snooper %+v)", ip6, l.snoop.Stats())
	}
	if st := l.snoop.Stats(); st.TCPMessages < 1 {
		t.Errorf("no TCP message reassembled: %+v", st)
	}

	// The kernel forgets the A element by itself after TTL + grace.
	if !waitFor(5*time.Second, func() bool { _, ok := l.elements(t, "fqdn0_v4")[ip4]; return !ok }) {
		t.Fatalf("%s still in fqdn0_v4 %v after the answer", ip4, time.Since(answered))
	}
	if gone := time.Since(answered); gone < 2500*time.Millisecond {
		t.Errorf("element gone after %v, before TTL 2s + grace 1s", gone)
	}

	// A renewal rewrites the element with a fresh timeout.
	l.dig(t, "www.example.test", "A")
	if !waitFor(2*time.Second, func() bool { _, ok := l.elements(t, "fqdn0_v4")[ip4]; return ok }) {
		t.Fatalf("%s not back after a new query", ip4)
	}
	time.Sleep(1500 * time.Millisecond)
	l.dig(t, "www.example.test", "A")
	if !waitFor(2*time.Second, func() bool { e = l.elements(t, "fqdn0_v4")[ip4]; return e.expires > 2*time.Second }) {
		t.Errorf("renewal did not refresh the timeout: %+v", e)
	}

	// A name that moves: its new address appears after a new query.
	first := l.dig(t, "moving.example.test", "A")
	if len(first) != 1 {
		t.Fatalf("dig moving: %q", first)
	}
	old := netip.MustParseAddr(first[0])
	var moved netip.Addr
	if !waitFor(8*time.Second, func() bool {
		a := l.dig(t, "moving.example.test", "A")
		if len(a) == 1 && a[0] != first[0] {
			moved = netip.MustParseAddr(a[0])
			return true
		}
		return false
	}) {
		t.Fatal("moving.example.test never moved")
	}
	if !waitFor(2*time.Second, func() bool { _, ok := l.elements(t, "fqdn0_v4")[moved]; return ok }) {
		t.Fatalf("moved address %s not in fqdn0_v4: %v", moved, l.elements(t, "fqdn0_v4"))
	}
	if !waitFor(4*time.Second, func() bool { _, ok := l.elements(t, "fqdn0_v4")[old]; return !ok }) {
		t.Errorf("old address %s not forgotten", old)
	}
	if _, ok := l.elements(t, "fqdn1_v4")[moved]; ok {
		t.Errorf("moved address in fqdn1_v4, whose patterns do not match it")
	}

	// Caps and counters: three names on one address, two allowed.
	for _, n := range []string{"s1.example.test", "s2.example.test", "s3.example.test"} {
		l.dig(t, n, "A")
	}
	if !waitFor(2*time.Second, func() bool { return l.cache.Stats().RefusedNamesPerIP == 1 }) {
		t.Errorf("names-per-address cap: %+v", l.cache.Stats())
	}
	l.mu.Lock()
	shared := append([]string(nil), l.shared...)
	l.mu.Unlock()
	if len(shared) != 1 || shared[0] != "192.0.2.50 s2.example.test 2" {
		t.Errorf("shared-address warnings %q", shared)
	}
	names := l.cache.AppendNames(nil, netip.MustParseAddr("192.0.2.50"), time.Now())
	if len(names) != 2 {
		t.Errorf("192.0.2.50 names %v", names)
	}
	st := l.snoop.Stats()
	if st.BadMessages != 0 || st.Malformed != 0 || st.Foreign != 0 || st.Answers < 9 {
		t.Errorf("snooper stats %+v", st)
	}
	if ss := l.sets.Stats(); ss.Failures != 0 || ss.Elements < 5 {
		t.Errorf("sets stats %+v", ss)
	}
	t.Logf("snooper %+v; cache %+v; sets %+v", st, l.cache.Stats(), l.sets.Stats())

	// Sync after the table was replaced writes the live addresses again.
	if err := RemoveCapture(CaptureConfig{NetNS: l.host.NS.Fd(), Table: testTable}); err != nil {
		t.Fatal(err)
	}
	if err := l.sets.Ensure(); err != nil {
		t.Fatal(err)
	}
	if err := l.sets.Sync(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.elements(t, "fqdn0_v4")[netip.MustParseAddr("192.0.2.50")]; !ok {
		t.Errorf("Sync did not restore 192.0.2.50: %v", l.elements(t, "fqdn0_v4"))
	}
}

func TestKernelCaptureInstallRemove(t *testing.T) {
	l := newKernelLab(t)
	fd := l.host.NS.Fd()
	// Installing again replaces the table; removing twice is fine.
	if err := InstallCapture(CaptureConfig{NetNS: fd, OutIfPrefix: netlab.WorkloadIfPrefix, Local: true}); err != nil {
		t.Fatal(err)
	}
	out, err := l.host.NS.Exec(context.Background(), "nft", "list", "table", "inet", DefaultCaptureTable)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hook forward", "hook input", `udp sport 53 oifname "bhw*" log group 101 snaplen 65535 queue-threshold 1`, "tcp sport 53"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Replies only, after the filter: the agent's configuration.
	if err := InstallCapture(CaptureConfig{NetNS: fd, Priority: 10, RepliesOnly: true}); err != nil {
		t.Fatal(err)
	}
	out, err = l.host.NS.Exec(context.Background(), "nft", "list", "table", "inet", DefaultCaptureTable)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"priority filter + 10", "udp sport 53 ct direction reply log group 101"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for range 2 {
		if err := RemoveCapture(CaptureConfig{NetNS: fd}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.host.NS.Exec(context.Background(), "nft", "list", "table", "inet", DefaultCaptureTable); err == nil {
		t.Error("capture table still there")
	}
	if err := InstallCapture(CaptureConfig{NetNS: fd, OutIfPrefix: "this-is-too-long-for-an-ifname"}); err == nil {
		t.Error("overlong interface prefix accepted")
	}
}
