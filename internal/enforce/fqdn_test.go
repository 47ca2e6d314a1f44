package enforce

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/dnssnoop"
	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/l7"
	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/span"
	"golang.org/x/net/dns/dnsmessage"
)

// fqdnPolicy lets cli reach only *.example.test on tcp/80 (and the DNS
// server); everything else is dropped by default. The servers accept
// tcp/80 at their ingress: this test is about cli's egress.
const fqdnPolicy = `
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: example-test}
spec:
  fqdns: ["*.example.test"]
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: resolver}
spec:
  ips: ["%s"]
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: egress}
spec:
  category: Application
  rules:
    - name: dns
      destinations: [resolver]
      services: [udp/53, tcp/53]
      action: allow
    - name: web
      destinations: [example-test]
      services: [tcp/80]
      action: allow
      direction: out
    - name: serve
      services: [tcp/80]
      action: allow
      direction: in
---
apiVersion: bulkhead.io/v1
kind: DefaultRule
metadata: {name: default}
spec:
  action: drop
`

// spoofAnswer sends, from port 53 of the caller's namespace, a DNS answer
// binding evil.example.test to addr to port 33333 of dst.
func spoofAnswer(dst, addr netip.Addr) error {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true, Authoritative: true})
	name := dnsmessage.MustNewName("evil.example.test.")
	if err := b.StartQuestions(); err != nil {
		return err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return err
	}
	if err := b.StartAnswers(); err != nil {
		return err
	}
	if err := b.AResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: 300}, dnsmessage.AResource{A: addr.As4()}); err != nil {
		return err
	}
	msg, err := b.Finish()
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 53})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WriteToUDPAddrPort(msg, netip.AddrPortFrom(dst, 33333))
	return err
}

// TestFQDNEndToEnd: a workload allowed only *.example.test (tcp/80) with
// a default drop resolves www.example.test (a CNAME to edge.example.test,
// TTL 2 s) through the lab's DNS server with dig; it reaches the answer's
// address and nothing else; when edge.example.test moves, the new address
// is allowed after a new lookup, and the old one is dropped once the last
// answer that named it is older than its TTL plus the grace.
func TestFQDNEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, nftables, NFLOG")
	}
	if _, err := os.Stat("/usr/bin/dig"); err != nil {
		t.Skip("needs dig (dnsutils)")
	}
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	host, err := topo.AddHost("h1")
	if err != nil {
		t.Fatal(err)
	}
	ws := map[string]*netlab.Workload{}
	for _, name := range []string{"cli", "dns", "srv1", "srv2", "other"} {
		w, err := topo.AddWorkload(host, netlab.WorkloadConfig{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		ws[name] = w
		if name != "cli" && name != "dns" {
			if _, err := w.Serve(80); err != nil {
				t.Fatal(err)
			}
		}
	}
	cli, srv1, srv2, other := ws["cli"], ws["srv1"], ws["srv2"], ws["other"]

	// The lab's DNS server: www is a CNAME to edge, which moves from srv1
	// to srv2 every 6 s.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	const every = 6 * time.Second
	dcfg := apps.DNSConfig{
		Port: 53,
		Zones: []apps.Zone{{Name: "example.test", TTL: 2, Records: []apps.Record{
			{Name: "www", CNAME: "edge.example.test."},
		}}},
		Moves: []apps.Move{{Name: "edge.example.test", TTL: 2, Every: apps.Duration(every),
			Targets: []string{srv1.IPv4.String(), srv2.IPv4.String()}}},
	}
	dcfg.Allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	dcfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan struct{}, 2)
	dcfg.Ready = func(string, net.Addr) { ready <- struct{}{} }
	dnsErr := make(chan error, 1)
	wg.Go(func() { dnsErr <- ws["dns"].NS.Do(func() error { return apps.RunDNS(ctx, dcfg) }) })
	for range 2 {
		select {
		case <-ready:
		case err := <-dnsErr:
			t.Fatalf("dns server: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("dns server did not start")
		}
	}

	// The policy, through the evaluator and span, as the manager sends it.
	var wl strings.Builder
	for _, name := range []string{"cli", "dns", "srv1", "srv2", "other"} {
		w := ws[name]
		fmt.Fprintf(&wl, "---\napiVersion: bulkhead.io/v1\nkind: Workload\nmetadata: {name: %s}\nspec: {host: h1, interface: %s, ips: [%q, %q]}\n",
			name, w.Interface, w.IPv4, w.IPv6)
	}
	docs, err := policy.Decode("fqdn.yaml", []byte(fmt.Sprintf(fqdnPolicy, ws["dns"].IPv4)+wl.String()))
	if err != nil {
		t.Fatal(err)
	}
	set := policy.NewSet()
	for _, d := range docs {
		set.Put(d.Object)
	}
	next := uint32(100)
	set.AssignRuleIDs(func() uint32 { next++; return next })
	if err := set.Validate(nil).Err(); err != nil {
		t.Fatal(err)
	}
	ev, err := eval.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	c, err := span.NewCompiler(ev, set)
	if err != nil {
		t.Fatal(err)
	}
	st, stats, err := c.Host("h1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if stats.FQDN != 1 || len(st.FQDNSets) != 1 {
		t.Fatalf("span: %d FQDN rules, sets %+v; want 1 rule, 1 set", stats.FQDN, st.FQDNSets)
	}
	payload, err := span.Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := New(filepath.Join(netlab.RunDir, host.NS.Name), nft.Config{},
		WithL7(l7.Config{}, log), WithDNSCache(dnssnoop.CacheConfig{Grace: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Apply(ctx, 1, span.Format, payload); err != nil {
		t.Fatal(err)
	}

	resolve := func() netip.Addr {
		t.Helper()
		out, err := cli.NS.Exec(ctx, "dig", "+short", "+tries=1", "+time=2", "@"+ws["dns"].IPv4.String(), "www.example.test", "A")
		if err != nil {
			t.Fatalf("dig: %v\n%s", err, out)
		}
		lines := strings.Fields(string(out))
		if len(lines) != 2 || lines[0] != "edge.example.test." {
			t.Fatalf("dig www.example.test: %q, want the CNAME and one address", out)
		}
		return netip.MustParseAddr(lines[1])
	}
	// The snooper writes the set right after the answer passed; a SYN
	// sent before that is dropped and TCP sends it again a second later,
	// so an allowed connection gets 3 s.
	probe := func(what string, dst netip.Addr, want netlab.Outcome) {
		t.Helper()
		timeout := 400 * time.Millisecond
		if want != netlab.Timeout {
			timeout = 3 * time.Second
		}
		start := time.Now()
		got, err := cli.ProbeTCP(netip.AddrPortFrom(dst, 80), timeout)
		if err != nil || got != want {
			t.Errorf("%s: cli -> %v:80: %v (%v), want %v", what, dst, got, err, want)
			return
		}
		t.Logf("%s: cli -> %v:80: %v after %v", what, dst, got, time.Since(start).Round(time.Millisecond))
	}

	probe("before any lookup", srv1.IPv4, netlab.Timeout)
	first := resolve()
	moved := srv2.IPv4
	if first == srv2.IPv4 {
		moved = srv1.IPv4
	}
	probe("resolved", first, netlab.Open)
	probe("not resolved", moved, netlab.Timeout)
	probe("not a name of the rule", other.IPv4, netlab.Timeout)

	// A workload posing as a resolver: an "answer" from port 53 that
	// answers no query of cli is never believed.
	if err := other.NS.Do(func() error { return spoofAnswer(cli.IPv4, other.IPv4) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	probe("spoofed answer", other.IPv4, netlab.Timeout)

	// Ask again until the name moved; each answer renews the old address.
	deadline := time.Now().Add(2 * every)
	var movedAt time.Time
	for {
		if a := resolve(); a == moved {
			movedAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge.example.test did not move in %v", 2*every)
		}
		time.Sleep(200 * time.Millisecond)
	}
	probe("moved, new address", moved, netlab.Open)
	// The last answer naming the old address came at most ~0.3 s before
	// movedAt: TTL 2 s + grace 1 s later the kernel forgets it.
	time.Sleep(time.Until(movedAt.Add(3500 * time.Millisecond)))
	probe("moved, old address after TTL+grace", first, netlab.Timeout)
	// Its own answer expired too; a new lookup (before the next move)
	// allows it again.
	probe("moved, new address, answer expired", moved, netlab.Timeout)
	if a := resolve(); a != moved {
		t.Fatalf("www.example.test moved back to %v too early", a)
	}
	probe("moved, new address, looked up again", moved, netlab.Open)

	// Someone deletes the table: the repair is a full apply, which
	// recreates the sets empty, and the enforcer writes them again from
	// its cache, so no new lookup is needed.
	if out, err := host.NS.Exec(ctx, "nft", "delete", "table", "inet", "bulkhead"); err != nil {
		t.Fatalf("nft delete: %v\n%s", err, out)
	}
	if _, ok, _ := e.Verify(ctx); ok {
		t.Fatal("Verify: no drift after the table was deleted")
	}
	if err := e.Apply(ctx, 1, span.Format, payload); err != nil {
		t.Fatal(err)
	}
	probe("after a full re-apply", moved, netlab.Open)

	fs, ok := e.FQDNStats()
	if !ok || fs.Snooper.Answers == 0 || fs.Sets.Elements == 0 {
		t.Errorf("snooper stats %+v (running %v): want answers and set writes", fs, ok)
	}
	t.Logf("snooper %+v; sets %+v", fs.Snooper, fs.Sets)

	// Uninstall removes the capture table with the data plane's, also
	// from an enforcer that never ran the snooper (bulkhead agent
	// --uninstall).
	e.Close()
	e2, err := New(filepath.Join(netlab.RunDir, host.NS.Name), nft.Config{}, WithL7(l7.Config{}, log))
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := host.NS.Exec(ctx, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "bulkhead") {
		t.Errorf("tables left after Remove:\n%s", out)
	}
}
