package l7

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestKernelLearned: a TLS connection the kernel queues is in the reader's
// table under its 5-tuple with the app, the negotiated version and the
// SNI, which is what the agent's flow collector puts on its records.
func TestKernelLearned(t *testing.T) {
	l := newL7Lab(t)
	cert := selfSigned(t)
	l.serve(t, 8443, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		io.Copy(tc, tc)
	})
	r, _ := l.startReader(t)
	c, err := l.client.Dial("tcp", netip.AddrPortFrom(l.server.IPv4, 8443), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, ServerName: "shop.lab.test"})
	if _, err := tc.Write([]byte("ping")); err != nil {
		t.Fatalf("TLS 1.3 must pass: %v (reader %+v)", err, r.Stats())
	}
	var b [4]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		t.Fatalf("echo: %v", err)
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	k := Tuple{Src: local.Addr(), Dst: l.server.IPv4, Proto: 6, SPort: local.Port(), DPort: 8443}
	got, ok := r.Learned().Lookup(k)
	if !ok || got.App != "APP_TLS" || got.TLSVersion != "1.3" || got.ServerName != "shop.lab.test" {
		t.Fatalf("learned %+v %v for %+v, want APP_TLS 1.3 shop.lab.test (reader %+v)", got, ok, k, r.Stats())
	}
}
