package dpi

import (
	"bytes"
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"
)

func TestAppsMatchPolicy(t *testing.T) {
	var names, tlsNames []string
	for _, a := range Apps() {
		names = append(names, a.String())
		if a.IsTLS() {
			tlsNames = append(tlsNames, a.String())
		}
		if b, ok := ParseApp(a.String()); !ok || b != a {
			t.Errorf("ParseApp(%q) = %v, %v", a, b, ok)
		}
	}
	want, wantTLS := slices.Clone(policy.KnownApps), slices.Clone(policy.TLSApps)
	for _, s := range [][]string{names, tlsNames, want, wantTLS} {
		slices.Sort(s)
	}
	if !slices.Equal(names, want) {
		t.Errorf("dpi apps %v\npolicy.KnownApps %v", names, want)
	}
	if !slices.Equal(tlsNames, wantTLS) {
		t.Errorf("dpi TLS apps %v, policy.TLSApps %v", tlsNames, wantTLS)
	}
}

// detector is one parser run alone on a flow's first message.
type detector struct {
	name string
	run  func(f *Flow, dir Dir, b []byte) status
}

func detectors() []detector {
	var ds []detector
	for i, d := range tcpDetectors {
		ds = append(ds, detector{name: "tcp#" + string(rune('a'+i)), run: d})
	}
	udp := map[string]func(f *Flow, b []byte) status{
		"dns":      func(f *Flow, b []byte) status { return f.dns(b, false) },
		"ntp":      (*Flow).ntp,
		"snmp":     (*Flow).snmp,
		"kerberos": (*Flow).kerberos,
		"cldap":    (*Flow).cldap,
	}
	for name, d := range udp {
		ds = append(ds, detector{name: name, run: func(f *Flow, _ Dir, b []byte) status { return d(f, b) }})
	}
	return ds
}

// TestParsersRejectOtherProtocols runs every parser on the first message
// of each direction of every captured flow: a parser that recognises a
// message must name the flow's labelled app; none may claim a flow whose
// protocol the engine does not know.
func TestParsersRejectOtherProtocols(t *testing.T) {
	flows := loadCaptures(t)
	checked := 0
	for _, lf := range flows {
		seen := [2]bool{}
		for _, s := range lf.samples {
			if seen[s.dir] {
				continue
			}
			seen[s.dir] = true
			for _, d := range detectors() {
				var f Flow
				f.Reset(lf.flow.Proto)
				if d.run(&f, s.dir, s.payload) != yes {
					continue
				}
				checked++
				got, want := f.res.App, lf.label.App
				if got.String() != want && !(got.IsTLS() && strings.HasPrefix(want, "APP_HTTP")) {
					t.Errorf("%s: parser %s takes the %v message (%q...) for %v", lf.String(), d.name, s.dir, head(s.payload), got)
				}
			}
		}
	}
	if checked < len(flows)/2 {
		t.Errorf("only %d parser matches over %d flows", checked, len(flows))
	}
}

func head(b []byte) []byte { return b[:min(len(b), 24)] }

// feedAll runs a flow's samples through a fresh engine.
func feedAll(proto uint8, samples []sample) Result {
	var f Flow
	f.Reset(proto)
	for _, s := range samples {
		if _, done := f.Feed(s.dir, s.payload); done {
			break
		}
	}
	return *f.Finish()
}

// TestSegmentsSplit feeds every TCP flow with its first message in each
// direction cut into 2 and 3 segments: the result must not change.
func TestSegmentsSplit(t *testing.T) {
	for _, lf := range loadCaptures(t) {
		if lf.flow.Proto != TCP {
			continue
		}
		want := feedAll(TCP, lf.samples)
		for _, parts := range []int{2, 3} {
			var split []sample
			seen := [2]bool{}
			for _, s := range lf.samples {
				if seen[s.dir] || len(s.payload) < parts {
					split = append(split, s)
					continue
				}
				seen[s.dir] = true
				n := len(s.payload) / parts
				for i := 0; i < parts; i++ {
					end := (i + 1) * n
					if i == parts-1 {
						end = len(s.payload)
					}
					split = append(split, sample{s.dir, s.payload[i*n : end]})
				}
			}
			if got := feedAll(TCP, split); got != want {
				t.Errorf("%s in %d parts: %v %q %s, unsplit %v %q %s", lf.String(), parts,
					got.App, got.Host(), got.TLSVersionName(), want.App, want.Host(), want.TLSVersionName())
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	flows := loadCaptures(t)
	f := new(Flow)
	allocs := testing.AllocsPerRun(20, func() {
		for _, lf := range flows {
			f.Reset(lf.flow.Proto)
			for _, s := range lf.samples {
				f.Feed(s.dir, s.payload)
			}
			f.Finish()
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per run over %d flows, want 0", allocs, len(flows))
	}
}

// TestTruncatedMessages feeds every prefix of every first message, and
// the message with bytes flipped: no panic, and a prefix of a message
// never yields a different app than the whole one.
func TestTruncatedMessages(t *testing.T) {
	for _, lf := range loadCaptures(t) {
		if len(lf.samples) == 0 {
			continue
		}
		s := lf.samples[0]
		whole := feedAll(lf.flow.Proto, lf.samples[:1])
		for n := 1; n < len(s.payload) && n < 2048; n++ {
			var f Flow
			f.Reset(lf.flow.Proto)
			f.Feed(s.dir, s.payload[:n])
			got := f.Finish().App
			if got != AppUnknown && got != whole.App && !(got.IsTLS() && whole.App.IsTLS()) {
				t.Errorf("%s: %d-byte prefix is %v, the whole message %v", lf.String(), n, got, whole.App)
			}
			flipped := slices.Clone(s.payload)
			flipped[n] ^= 0xff
			f.Reset(lf.flow.Proto)
			f.Feed(s.dir, flipped)
			f.Finish()
		}
	}
}

func TestGreetingThenCommand(t *testing.T) {
	for _, c := range []struct {
		greeting, command string
		want              App
	}{
		{"220 mail.lab.test ESMTP Postfix\r\n", "EHLO c\r\n", AppSMTP},
		{"220 ready\r\n", "EHLO client.lab.test\r\n", AppSMTP},
		{"220 ready\r\n", "helo client\r\n", AppSMTP},
		{"220 ready\r\n", "USER anonymous\r\n", AppFTP},
		{"220-Welcome\r\n", "AUTH TLS\r\n", AppFTP},
		{"220 ProFTPD Server\r\n", "USER x\r\n", AppFTP},
		{"220 ready\r\n", "NOOP\r\n", AppUnknown},
		{"221 bye\r\n", "EHLO c\r\n", AppSMTP}, // no greeting: the command alone
	} {
		var f Flow
		f.Reset(TCP)
		f.Feed(Server, []byte(c.greeting))
		r, _ := f.Feed(Client, []byte(c.command))
		if r.App != c.want {
			t.Errorf("%q then %q: %v, want %v", c.greeting, c.command, r.App, c.want)
		}
	}
}

// clientHello makes a real ClientHello with crypto/tls.
func realClientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	go func() {
		tls.Client(c2, cfg).Handshake()
		c2.Close()
	}()
	c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hello []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c1.Read(buf)
		hello = append(hello, buf[:n]...)
		if err != nil {
			t.Fatal(err)
		}
		if len(hello) >= 5 && len(hello) >= 5+int(hello[3])<<8|int(hello[4]) {
			return hello
		}
	}
}

func TestClientHelloAcrossSegments(t *testing.T) {
	alpn := []string{"h2", "http/1.1"}
	for i := 0; i < 150; i++ {
		alpn = append(alpn, "proto-padding-"+strings.Repeat("x", 10)) // a hello of several KB
	}
	hello := realClientHello(t, &tls.Config{ServerName: "big.lab.test", NextProtos: alpn, MinVersion: tls.VersionTLS12})
	if len(hello) < 3000 {
		t.Fatalf("hello of %d bytes", len(hello))
	}
	for _, seg := range []int{1, 100, 536, 1448, len(hello)} {
		// Every segment size works: a message being reassembled costs one
		// packet of the budget (1-byte segments included; MaxBuffer bounds it).
		var f Flow
		f.Reset(TCP)
		for off := 0; off < len(hello); off += seg {
			f.Feed(Client, hello[off:min(off+seg, len(hello))])
		}
		r := f.Result()
		if r.App != AppHTTPS || string(r.Host()) != "big.lab.test" || r.TLSOffered != tls.VersionTLS13 || len(r.JA4()) != 36 {
			t.Errorf("%d-byte segments: %v host %q offered %x ja4 %s", seg, r.App, r.Host(), r.TLSOffered, r.JA4())
		}
		if ja3 := f.JA3String(); !bytes.HasPrefix(ja3, []byte("771,")) {
			t.Errorf("JA3 %q", ja3)
		}
	}
}

func TestHTTPHeadersAcrossSegments(t *testing.T) {
	req := "GET /catalog?page=2 HTTP/1.1\r\nUser-Agent: test\r\nAccept: */*\r\nHost: shop.lab.test:8080\r\n\r\n"
	var f Flow
	f.Reset(TCP)
	f.Feed(Client, []byte(req[:20]))
	f.Feed(Client, []byte(req[20:50]))
	r, done := f.Feed(Client, []byte(req[50:]))
	if !done || r.App != AppHTTP || string(r.Host()) != "shop.lab.test" || string(r.Method()) != "GET" || string(r.Path()) != "/catalog?page=2" {
		t.Errorf("done %v %v host %q %s %s", done, r.App, r.Host(), r.Method(), r.Path())
	}
}
