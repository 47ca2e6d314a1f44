package apps

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func testZones() DNSConfig {
	return DNSConfig{
		Zones: []Zone{
			{Name: "lab.test", TTL: 30, Records: []Record{
				{Name: "web1", A: []string{"10.77.1.10"}, AAAA: []string{"fd00:77:0:1::10"}},
				{Name: "edge", A: []string{"10.77.1.11"}, TTL: 20},
				{Name: "www", CNAME: "web1.lab.test."},
				{Name: "@", TXT: []string{"v=lab1"}},
				{Name: "a.b.deep", A: []string{"10.77.1.12"}},
				{Name: "out", CNAME: "elsewhere.invalid."},
			}},
			{Name: "example.test", TTL: 10, Records: []Record{
				{Name: "www", CNAME: "www.cdn.example.test."},
				{Name: "www.cdn", CNAME: "edge.lab.test."},
				{Name: "loop1", CNAME: "loop2.example.test."},
				{Name: "loop2", CNAME: "loop1.example.test."},
			}},
		},
		Moves: []Move{{Name: "moving.example.test", TTL: 1, Every: Duration(time.Second), Targets: []string{"10.77.1.10", "10.77.1.11"}}},
	}
}

func startDNS(t *testing.T) (string, string, *logBuf) {
	t.Helper()
	logs, log := newLog()
	cfg := testZones()
	addrs := startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunDNS(ctx, cfg) })
	if addrs["udp"] == "" || addrs["tcp"] == "" {
		t.Fatalf("dns ready on %v, want udp and tcp", addrs)
	}
	return addrs["udp"], addrs["tcp"], logs
}

func TestDNSAnswers(t *testing.T) {
	udp, tcp, logs := startDNS(t)
	if udp != tcp {
		t.Fatalf("udp %s and tcp %s differ", udp, tcp)
	}
	env := &Env{}
	tests := []struct {
		name, typ string
		rcode     string
		records   []string
	}{
		{"www.example.test", "A", "NOERROR", []string{
			"www.example.test CNAME www.cdn.example.test 10",
			"www.cdn.example.test CNAME edge.lab.test 10",
			"edge.lab.test A 10.77.1.11 20"}},
		{"WWW.Lab.Test.", "A", "NOERROR", []string{"www.lab.test CNAME web1.lab.test 30", "web1.lab.test A 10.77.1.10 30"}},
		{"www.lab.test", "AAAA", "NOERROR", []string{"www.lab.test CNAME web1.lab.test 30", "web1.lab.test AAAA fd00:77:0:1::10 30"}},
		{"www.lab.test", "CNAME", "NOERROR", []string{"www.lab.test CNAME web1.lab.test 30"}},
		{"lab.test", "TXT", "NOERROR", []string{`lab.test TXT "v=lab1" 30`}},
		{"lab.test", "SOA", "NOERROR", []string{"lab.test SOA ns1.lab.test 30"}},
		{"edge.lab.test", "AAAA", "NOERROR", nil},      // exists, no such data
		{"b.deep.lab.test", "A", "NOERROR", nil},       // empty non-terminal
		{"nosuch.lab.test", "A", "NXDOMAIN", nil},      // under a zone, not there
		{"www.elsewhere.invalid", "A", "REFUSED", nil}, // not ours: no recursion
		{"out.lab.test", "A", "NOERROR", []string{"out.lab.test CNAME elsewhere.invalid 30"}},
		{"loop1.example.test", "A", "NOERROR", nil}, // a loop stops, answers bounded
	}
	for _, tt := range tests {
		for _, overTCP := range []bool{false, true} {
			ans, err := lookupDNS(context.Background(), env, udp, tt.name, tt.typ, overTCP, 2*time.Second)
			if err != nil {
				t.Fatalf("%s %s tcp=%v: %v", tt.name, tt.typ, overTCP, err)
			}
			if ans.RCode != tt.rcode {
				t.Errorf("%s %s tcp=%v: rcode %s, want %s", tt.name, tt.typ, overTCP, ans.RCode, tt.rcode)
			}
			if tt.name == "loop1.example.test" {
				if len(ans.Records) > 8 {
					t.Errorf("CNAME loop answered with %d records", len(ans.Records))
				}
				continue
			}
			if !slices.Equal(ans.Records, tt.records) {
				t.Errorf("%s %s tcp=%v:\n got %q\nwant %q", tt.name, tt.typ, overTCP, ans.Records, tt.records)
			}
		}
	}
	logs.waitFor(t, time.Second, "msg=query", "name=www.example.test.", "transport=tcp", "rcode=NOERROR")
}

// A name that moves answers with its next target once Every has passed.
func TestDNSMove(t *testing.T) {
	udp, _, logs := startDNS(t)
	first, err := lookupDNS(context.Background(), &Env{}, udp, "moving.example.test", "A", false, 2*time.Second)
	if err != nil || len(first.Addrs) != 1 {
		t.Fatalf("first answer %+v, %v", first, err)
	}
	if first.TTL != 1 {
		t.Errorf("TTL %d, want 1", first.TTL)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		ans, err := lookupDNS(context.Background(), &Env{}, udp, "moving.example.test", "A", false, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.Addrs) == 1 && ans.Addrs[0] != first.Addrs[0] {
			logs.waitFor(t, 2*time.Second, "msg=\"name moved\"", "to="+ans.Addrs[0].String())
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("moving.example.test stayed at %s", first.Addrs[0])
}

// dig, a resolver that is not ours, follows the CNAME chain over UDP and TCP.
func TestDNSWithDig(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (apt-get install dnsutils): skipping the dig check")
	}
	udp, _, _ := startDNS(t)
	host, port, _ := net.SplitHostPort(udp)
	for _, proto := range []string{"+notcp", "+tcp"} {
		out, err := exec.Command("dig", "@"+host, "-p", port, proto, "+time=2", "+tries=1", "+noall", "+answer", "+comments", "www.example.test", "A").CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", proto, err, out)
		}
		text := string(out)
		for _, want := range []string{"status: NOERROR", "flags: qr aa", "www.cdn.example.test.", "edge.lab.test.", "10.77.1.11"} {
			if !strings.Contains(text, want) {
				t.Errorf("dig %s: no %q in\n%s", proto, want, text)
			}
		}
		var chain []string
		for line := range strings.SplitSeq(text, "\n") {
			if f := strings.Fields(line); len(f) == 5 && !strings.HasPrefix(line, ";") {
				chain = append(chain, f[0]+" "+f[3]+" "+f[4])
			}
		}
		want := []string{"www.example.test. CNAME www.cdn.example.test.", "www.cdn.example.test. CNAME edge.lab.test.", "edge.lab.test. A 10.77.1.11"}
		if !slices.Equal(chain, want) {
			t.Errorf("dig %s answer:\n got %q\nwant %q", proto, chain, want)
		}
	}
	out, _ := exec.Command("dig", "@"+host, "-p", port, "+time=2", "+tries=1", "nosuch.example.test").CombinedOutput()
	if !strings.Contains(string(out), "status: NXDOMAIN") {
		t.Errorf("dig nosuch.example.test:\n%s", out)
	}
}

// The dns-client app runs its queries and logs each answer.
func TestDNSClientApp(t *testing.T) {
	udp, _, _ := startDNS(t)
	logs, log := newLog()
	cfg := DNSClientConfig{Pace: once(), Queries: []DNSQuery{{Name: "www.example.test", Type: "A"}, {Name: "web1.lab.test", Type: "AAAA", TCP: true}, {Name: "nosuch.lab.test"}}}
	cfg.Resolver = udp
	cfg.Log = log
	runClient(t, 10*time.Second, func(ctx context.Context) error { return RunDNSClient(ctx, cfg) })
	logs.waitFor(t, time.Second, "msg=lookup", "name=www.example.test", "edge.lab.test A 10.77.1.11")
	logs.waitFor(t, time.Second, "msg=lookup", "name=web1.lab.test", "tcp=true", "fd00:77:0:1::10")
	logs.waitFor(t, time.Second, "msg=lookup", "name=nosuch.lab.test", "rcode=NXDOMAIN")
}

// Clients resolve names with the lab server only, and the dial guard checks
// where a name led before connecting.
func TestLabResolverAndGuard(t *testing.T) {
	udp, _, _ := startDNS(t)
	env := &Env{Resolver: udp}
	addrs, err := env.resolver().LookupHost(context.Background(), "www.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(addrs, "10.77.1.11") {
		t.Fatalf("www.example.test resolved to %v, want 10.77.1.11", addrs)
	}
	// 10.77.1.11 is not in Allow (loopback only): refused before connect.
	_, err = env.dialer(time.Second).Dial("tcp", "www.example.test:80")
	if err == nil || !strings.Contains(err.Error(), ErrNotAllowed.Error()) {
		t.Fatalf("dial to a name outside Allow: %v, want %v", err, ErrNotAllowed)
	}
}
