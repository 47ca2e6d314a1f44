package scenario

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/lab/apps"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuf) has(subs ...string) bool {
	for line := range strings.SplitSeq(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return true
		}
	}
	return false
}

// shopOnLoopback is the built-in shop moved from 10.77.0.0/16 to
// 127.77.0.0/16, IPv4 only: every workload address is local, so the whole
// scenario runs in one process without namespaces.
func shopOnLoopback(t *testing.T) *Scenario {
	t.Helper()
	src, err := BuiltinSource("shop")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(src), "10.77.", "127.77.")
	text = regexp.MustCompile(`(?m)^\s+ipv6: .*\n`).ReplaceAllString(text, "")
	text = regexp.MustCompile(`, aaaa: \[[^\]]*\]`).ReplaceAllString(text, "")
	s, err := parse("shop-loopback.yaml", []byte(text), true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The whole shop runs on loopback: every server starts on its workload's
// address, every client works against them for a few seconds, and each
// traffic pattern shows at least one successful action in its log.
func TestShopRunsOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole shop for several seconds")
	}
	// Binding 127.77.0.53:53 needs what the servers need in the lab.
	probe, err := net.Listen("tcp", "127.77.0.53:53")
	if err != nil {
		t.Skipf("needs root (or CAP_NET_BIND_SERVICE) to bind ports below 1024 on 127.77.0.0/16: %v", err)
	}
	probe.Close()

	s := shopOnLoopback(t)
	launches, err := s.Launches(LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]*lockedBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(launches))
	start := func(l Launch) {
		a, _ := apps.Lookup(l.App)
		wg.Go(func() {
			if err := a.Run(ctx, l.Config); err != nil {
				errs <- fmt.Errorf("%s/%s: %w", l.Workload, l.Name, err)
			}
		})
	}
	var ready sync.WaitGroup
	for _, l := range launches {
		buf := &lockedBuf{}
		logs[l.Workload+"/"+l.Name] = buf
		env := apps.EnvOf(l.Config)
		env.Log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if l.Server {
			env.Bind = s.Workload(l.Workload).IPv4
			n := 1
			if l.App == "dns" {
				n = 2
			}
			ready.Add(n)
			env.Ready = func(string, net.Addr) { ready.Done() }
			start(l)
		}
	}
	waitTimeout(t, &ready, 10*time.Second, "servers ready")
	for _, l := range launches {
		if l.Server {
			continue
		}
		speedUp(l.Config)
		start(l)
	}
	time.Sleep(6 * time.Second)
	cancel()
	waitTimeout(t, &wg, 15*time.Second, "every app stopped")
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	want := map[string][][]string{
		"shopper1/shopper1-shopper":    {{"msg=http", "status=200", "tls=1.3"}, {"msg=http", "method=POST", "/login"}},
		"shopper2/shopper2-shopper":    {{"msg=http", "status=200", "example.test"}},
		"partner1/partner1-api-caller": {{"msg=request", "proto=HTTP/2.0", "status=20"}},
		"legacy1/legacy1-tls-client":   {{"msg=request", "status=200", "tls=1.0"}},
		"report1/report1-db-client":    {{"msg=query", "rows="}},
		"report1/report1-cache-client": {{"msg=command", "cmd=SET"}},
		"jump1/jump1-ssh-admin":        {{"msg=\"ssh exec\"", "out="}},
		"rdsh1/rdsh1-rdsh":             {{"user=alice", "level=INFO"}, {"user=bob", "level=INFO"}, {"user=carol", "level=INFO"}, {"user=dave", "level=INFO"}},
		"mon1/mon1-dns-client":         {{"msg=lookup", "name=www.example.test", "edge.lab.test A 127.77.1.11"}, {"msg=lookup", "rcode=NXDOMAIN"}},
		"mon1/mon1-tls-client":         {{"msg=request", "status=200", "tls=1.3"}},
		"mon1/mon1-ldap-client":        {{"msg=search", "entries="}},
		"web1/web1-dns-client":         {{"msg=lookup", "rcode=NOERROR"}},
		"attacker/attacker-attacker":   {{"msg=\"open port\"", "port=22"}, {"msg=\"ssh guess\"", "ok=false"}, {"msg=exploit", "name=log4shell-ua", "status="}},
		"web1/https":                   {{"msg=request", "status=200"}},
		"web1/legacy":                  {{"msg=\"tls handshake\"", "version=1.0"}},
		"api1/api":                     {{"msg=request", "uri=/api/products"}},
		"db1/db":                       {{"msg=query", "user=shop"}, {"msg=query", "user=report"}, {"msg=query", "LIKE '%' OR '1'='1'"}},
		"dir1/ldap":                    {{"msg=bind", "uid=frank", "ok=true"}, {"msg=search", "entries="}},
		"dns1/dns":                     {{"msg=query", "rcode=NOERROR"}},
	}
	for name, checks := range want {
		buf := logs[name]
		if buf == nil {
			t.Errorf("no launch %s", name)
			continue
		}
		for _, c := range checks {
			if !buf.has(c...) {
				t.Errorf("%s: no log line with %q; log:\n%s", name, c, tail(buf.String(), 30))
			}
		}
	}
	// Clients other than the attacker should not fail at all (servers may
	// warn: the attacker's injections break the api's SQL).
	for _, l := range launches {
		name := l.Workload + "/" + l.Name
		if l.Server || l.App == "attacker" {
			continue
		}
		buf := logs[name]
		for line := range strings.SplitSeq(buf.String(), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				t.Errorf("%s: %s", name, line)
			}
		}
	}
}

// speedUp makes a client act every 300ms and bounds the attacker.
func speedUp(c apps.Config) {
	fast := apps.Pace{Interval: apps.Duration(300 * time.Millisecond), Timeout: apps.Duration(3 * time.Second)}
	switch x := c.(type) {
	case *apps.ShopperConfig:
		x.Pace, x.Pages = fast, 1
	case *apps.APICallerConfig:
		x.Pace = fast
	case *apps.TLSClientConfig:
		x.Pace = fast
	case *apps.SSHAdminConfig:
		x.Pace = fast
	case *apps.RDSHConfig:
		x.Pace = fast
	case *apps.DNSClientConfig:
		x.Pace = fast
	case *apps.DBClientConfig:
		x.Pace = fast
	case *apps.CacheClientConfig:
		x.Pace = fast
	case *apps.LDAPClientConfig:
		x.Pace = fast
	case *apps.AttackerConfig:
		x.Pace = apps.Pace{Interval: apps.Duration(time.Minute), Count: 1, Timeout: apps.Duration(2 * time.Second)}
		x.Scan.Ports, x.Scan.Rate = "20-25,80,443,5432", 500
		x.SSH.Rate, x.Web.Rate = 50, 50
	}
}

func waitTimeout(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: not within %s", what, d)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
