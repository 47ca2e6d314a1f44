package l7

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// Rule ids of the test state.
const (
	ruleTLS12     = 10 // allow APP_TLS minVersion 1.2 to 8443 (L7)
	ruleTLSRest   = 11 // drop the rest of 8443
	ruleHTTPSOnly = 12 // allow APP_TLS to 443 (L7)
	rule443Rest   = 13 // drop the rest of 443
	rulePlain     = 14 // allow 7001, no L7
)

// l7Lab is one host with a client and a server workload, the table and a
// reader.
type l7Lab struct {
	topo           *netlab.Topology
	host           *netlab.Host
	client, server *netlab.Workload
	table          *nft.Table
	state          *nft.HostState
}

func newL7Lab(t testing.TB) *l7Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("l7: needs root (network namespaces, nftables, NFQUEUE, conntrack)")
	}
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	l := &l7Lab{topo: topo}
	t.Cleanup(func() {
		if l.table != nil {
			l.table.Remove()
		}
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	if l.host, err = topo.AddHost("h1"); err != nil {
		t.Fatal(err)
	}
	if l.client, err = topo.AddWorkload(l.host, netlab.WorkloadConfig{Name: "c"}); err != nil {
		t.Fatal(err)
	}
	if l.server, err = topo.AddWorkload(l.host, netlab.WorkloadConfig{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	if l.table, err = nft.New(nft.Config{NetNS: l.host.NS.Fd()}); err != nil {
		t.Fatal(err)
	}
	a := func(ip netip.Addr, id nft.Identity) nft.IdentityRange {
		return nft.IdentityRange{Lo: ip, Hi: ip, Identity: id}
	}
	allow := func(r uint32) nft.Verdict { return nft.Verdict{Rule: r, Action: nft.Allow} }
	drop := func(r uint32) nft.Verdict { return nft.Verdict{Rule: r, Action: nft.Drop} }
	tcp := func(port uint16, v nft.Verdict, profile int) nft.Entry {
		return nft.Entry{Peer: 1, Proto: nft.ProtoTCP, Ports: nft.Port(port), Verdict: v, Profile: profile}
	}
	l.state = &nft.HostState{
		Revision: 1,
		Identities: []nft.IdentityRange{
			a(l.client.IPv4, 1), a(l.client.IPv6, 1), a(l.server.IPv4, 2), a(l.server.IPv6, 2),
		},
		Profiles: []nft.Profile{
			{Apps: []nft.AppMatch{{Name: "APP_TLS", MinVersion: "1.2"}}},
			{Apps: []nft.AppMatch{{Name: "APP_TLS"}}},
		},
		Workloads: []nft.Workload{
			{Name: "c", Interface: l.client.Interface},
			{Name: "s", Interface: l.server.Interface, Ingress: []nft.Entry{
				tcp(8443, allow(ruleTLS12), 1),
				tcp(8443, drop(ruleTLSRest), 0),
				tcp(443, allow(ruleHTTPSOnly), 2),
				tcp(443, drop(rule443Rest), 0),
				tcp(7001, allow(rulePlain), 0),
			}},
		},
		EgressDefault:  allow(1),
		IngressDefault: drop(1),
	}
	l.apply(t)
	return l
}

func (l *l7Lab) apply(t testing.TB) {
	t.Helper()
	l.state.Revision++
	if _, err := l.table.Apply(l.state); err != nil {
		t.Fatal(err)
	}
}

// startReader runs a DPI reader on the host's queue until the test ends or
// stop is called.
func (l *l7Lab) startReader(t testing.TB) (r *Reader, stop func()) {
	t.Helper()
	return l.startReaderQueues(t, 1)
}

// startReaderQueues is startReader reading queues consecutive queues.
func (l *l7Lab) startReaderQueues(t testing.TB, queues int) (r *Reader, stop func()) {
	t.Helper()
	r, err := New(Config{NetNS: l.host.NS.Fd(), Queues: queues})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetState(l.state); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			t.Errorf("reader: %v", err)
		}
	})
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	// The queue is bound once the reader answers; give it a moment.
	time.Sleep(100 * time.Millisecond)
	return r, stop
}

// serve runs fn for every connection accepted on port in the server
// workload.
func (l *l7Lab) serve(t testing.TB, port uint16, fn func(net.Conn)) {
	t.Helper()
	var ln net.Listener
	err := l.server.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":"+itoa(port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fn(c)
			}()
		}
	}()
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "s"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"s"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// marks returns the ct marks of the host's connections from the client to
// port.
func (l *l7Lab) marks(t testing.TB, port uint16) []nft.Mark {
	t.Helper()
	ct, err := conntrack.Dial(&netlink.Config{NetNS: l.host.NS.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	flows, err := ct.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []nft.Mark
	for _, f := range flows {
		o := f.TupleOrig
		if o.Proto.Protocol == nft.ProtoTCP && o.Proto.DestinationPort == port && o.IP.SourceAddress.Unmap() == l.client.IPv4 {
			out = append(out, nft.Mark(f.Mark))
		}
	}
	return out
}

func (l *l7Lab) flush(t testing.TB) {
	t.Helper()
	ct, err := conntrack.Dial(&netlink.Config{NetNS: l.host.NS.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.Flush(); err != nil {
		t.Fatal(err)
	}
}

// tlsEcho makes a TLS connection at version v from the client and has
// the server echo one message.
func (l *l7Lab) tlsEcho(port uint16, v uint16) error {
	c, err := l.client.Dial("tcp", netip.AddrPortFrom(l.server.IPv4, port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v, ServerName: "s"})
	if err := tc.Handshake(); err != nil {
		return err
	}
	if _, err := tc.Write([]byte("ping")); err != nil {
		return err
	}
	var b [4]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return err
	}
	if string(b[:]) != "ping" {
		return errors.New("echo mismatch")
	}
	return nil
}

func TestKernelTLSVersionRule(t *testing.T) {
	l := newL7Lab(t)
	cert := selfSigned(t)
	l.serve(t, 8443, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10})
		io.Copy(tc, tc)
	})
	r, _ := l.startReader(t)
	for _, tc := range []struct {
		name string
		v    uint16
		pass bool
	}{
		{"1.0", tls.VersionTLS10, false},
		{"1.1", tls.VersionTLS11, false},
		{"1.2", tls.VersionTLS12, true},
		{"1.3", tls.VersionTLS13, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l.flush(t)
			err := l.tlsEcho(8443, tc.v)
			if tc.pass != (err == nil) {
				t.Fatalf("TLS %s: err %v, want pass %v (reader %+v)", tc.name, err, tc.pass, r.Stats())
			}
			want := nft.MakeMark(nft.Verdict{Rule: ruleTLS12, Action: nft.Allow}, true)
			if !tc.pass {
				want = nft.MakeMark(nft.Verdict{Rule: ruleTLSRest, Action: nft.Drop}, true)
			}
			got := l.marks(t, 8443)
			if len(got) != 1 || got[0] != want {
				t.Fatalf("TLS %s: ct marks %v, want [%v]", tc.name, got, want)
			}
		})
	}
	t.Logf("reader: %+v", r.Stats())
}

func TestKernelSSHOnHTTPSPort(t *testing.T) {
	l := newL7Lab(t)
	l.serve(t, 443, func(c net.Conn) {
		c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
		io.Copy(io.Discard, c)
	})
	r, _ := l.startReader(t)
	c, err := l.client.Dial("tcp", netip.AddrPortFrom(l.server.IPv4, 443), time.Second)
	if err != nil {
		t.Fatalf("the handshake must pass in the kernel: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(700 * time.Millisecond))
	c.Write([]byte("SSH-2.0-Go\r\n"))
	var b [64]byte
	if n, err := c.Read(b[:]); err == nil {
		t.Fatalf("SSH banner %q reached the client through an HTTPS-only rule", b[:n])
	}
	want := nft.MakeMark(nft.Verdict{Rule: rule443Rest, Action: nft.Drop}, true)
	if got := l.marks(t, 443); len(got) != 1 || got[0] != want {
		t.Fatalf("ct marks %v, want [%v] (reader %+v)", got, want, r.Stats())
	}
}

func TestKernelNoL7NeverQueued(t *testing.T) {
	l := newL7Lab(t)
	l.serve(t, 7001, func(c net.Conn) { io.Copy(c, c) })
	r, _ := l.startReader(t)
	for range 5 {
		c, err := l.client.Dial("tcp", netip.AddrPortFrom(l.server.IPv4, 7001), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write([]byte("hello"))
		var b [5]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if s := r.Stats(); s.Packets != 0 {
		t.Fatalf("a flow no L7 rule concerns reached the queue: %+v", s)
	}
	want := nft.MakeMark(nft.Verdict{Rule: rulePlain, Action: nft.Allow}, true)
	for _, m := range l.marks(t, 7001) {
		if m != want {
			t.Fatalf("ct mark %v, want %v", m, want)
		}
	}
}

func TestKernelFailOpenClosed(t *testing.T) {
	l := newL7Lab(t)
	cert := selfSigned(t)
	l.serve(t, 8443, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		io.Copy(tc, tc)
	})
	// No reader. Fail-closed (the default): the handshake passes, the
	// payload does not.
	if _, err := l.client.Dial("tcp", netip.AddrPortFrom(l.server.IPv4, 8443), time.Second); err != nil {
		t.Fatalf("fail-closed: TCP handshake: %v", err)
	}
	if err := l.tlsEcho(8443, tls.VersionTLS13); err == nil {
		t.Fatal("fail-closed: TLS passed with no reader")
	}
	l.state.L7FailOpen = true
	l.apply(t)
	if err := l.tlsEcho(8443, tls.VersionTLS13); err != nil {
		t.Fatalf("fail-open: %v", err)
	}
	for _, m := range l.marks(t, 8443) {
		if !m.Pending() && m.Action() != 0 {
			t.Fatalf("fail-open without a reader decided a connection: %v", m)
		}
	}
}

// A reader of several queues binds them all, answers the rule's queue
// from its thread and stops cleanly.
func TestKernelSeveralQueues(t *testing.T) {
	l := newL7Lab(t)
	cert := selfSigned(t)
	l.serve(t, 8443, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10})
		io.Copy(tc, tc)
	})
	r, stop := l.startReaderQueues(t, 3)
	if err := l.tlsEcho(8443, tls.VersionTLS13); err != nil {
		t.Fatalf("TLS 1.3 through a reader of 3 queues: %v (reader %+v)", err, r.Stats())
	}
	want := nft.MakeMark(nft.Verdict{Rule: ruleTLS12, Action: nft.Allow}, true)
	if got := l.marks(t, 8443); len(got) != 1 || got[0] != want {
		t.Fatalf("ct marks %v, want [%v]", got, want)
	}
	// The last queue is bound by this reader: another reader of it fails.
	other, err := New(Config{NetNS: l.host.NS.Fd(), Queue: nft.DefaultL7Queue + 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := other.Run(ctx); !errors.Is(err, unix.EPERM) {
		t.Fatalf("queue %d bound by two readers: err %v, want EPERM", nft.DefaultL7Queue+2, err)
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the reader did not stop within 2s")
	}
	if s := r.Stats(); s.Decided == 0 || s.Errors != 0 {
		t.Fatalf("reader %+v, want decisions and no errors", s)
	}
}
