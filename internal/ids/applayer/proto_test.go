package applayer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// recConn records what the client side of a connection writes and reads,
// in order, as a conversation.
type recConn struct {
	net.Conn
	mu   sync.Mutex
	conv []msg
}

func (r *recConn) add(dir stream.Dir, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.conv); n > 0 && r.conv[n-1].dir == dir {
		r.conv[n-1].data += string(b)
		return
	}
	r.conv = append(r.conv, msg{dir, string(b)})
}

func (r *recConn) Write(b []byte) (int, error) {
	r.add(stream.ToServer, b)
	return r.Conn.Write(b)
}

func (r *recConn) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if n > 0 {
		r.add(stream.ToClient, b[:n])
	}
	return n, err
}

func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{Country: []string{"US"}, Organization: []string{"Shop Inc"}, CommonName: "shop.example"},
		DNSNames:     []string{"shop.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsHandshake runs a real crypto/tls handshake over loopback TCP and returns
// the bytes on the wire.
func tlsHandshake(t testing.TB, maxVersion uint16) []msg {
	conv, _ := tlsConversation(t, maxVersion, testCert(t))
	return conv
}

// tlsConversation runs a real crypto/tls handshake with the server's cert
// (and chain) and a short request, and returns the bytes on the wire and
// the client's view of the connection.
func tlsConversation(t testing.TB, maxVersion uint16, cert tls.Certificate) ([]msg, tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		srv, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(srv, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: maxVersion})
		err = s.Handshake()
		if err == nil {
			buf := make([]byte, 64)
			_, err = s.Read(buf)
		}
		s.Close()
		done <- err
	}()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rc := &recConn{Conn: cli}
	c := tls.Client(rc, &tls.Config{ServerName: "shop.example", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cs := c.ConnectionState()
	c.Close()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.conv, cs
}

func TestTLS(t *testing.T) {
	for _, tt := range []struct {
		max, want uint16
		name      string
	}{{tls.VersionTLS13, 0x0304, "TLS 1.3"}, {tls.VersionTLS12, 0x0303, "TLS 1.2"}} {
		conv := tlsHandshake(t, tt.max)
		for _, chunk := range []int{0, 1, 100} {
			r, p := feed(conv, chunk)
			if p != rules.ProtoTLS {
				t.Fatalf("%s: proto %d", tt.name, p)
			}
			if len(r.txs) != 2 {
				t.Fatalf("%s chunk %d: %d transactions %v", tt.name, chunk, len(r.txs), r.txs)
			}
			hello, server := r.txs[0], r.txs[1]
			if hello.Dir != stream.ToServer || hello.Buf[rules.BufTLSSNI] != "shop.example" || len(hello.Buf[rules.BufJA3Hash]) != 32 || hello.TLSVersion != tls.VersionTLS13 {
				t.Errorf("%s: ClientHello tx %v", tt.name, hello)
			}
			if hello.TLS.SNI != "shop.example" || hello.TLS.JA3 == nil || hello.TLS.JA3.Hash != hello.Buf[rules.BufJA3Hash] || hello.TLS.JA3.String == "" {
				t.Errorf("%s: ClientHello EVE %+v", tt.name, hello.TLS)
			}
			if server.Dir != stream.ToClient || server.TLSVersion != tt.want || server.TLS.Version != tt.name || server.Buf[rules.BufTLSSNI] != "shop.example" || server.ID != hello.ID {
				t.Errorf("%s: ServerHello tx %v %+v", tt.name, server, server.TLS)
			}
			subject, hasSubject := server.Buf[rules.BufTLSCertSubject]
			if tt.want == 0x0303 {
				const want = "C=US, O=Shop Inc, CN=shop.example"
				if subject != want || server.Buf[rules.BufTLSCertIssuer] != want || server.TLS.Subject != want || server.TLS.Issuer != want {
					t.Errorf("%s: certificate %q / %q, EVE %+v", tt.name, subject, server.Buf[rules.BufTLSCertIssuer], server.TLS)
				}
			} else if hasSubject {
				t.Errorf("%s: certificate subject %q from an encrypted certificate", tt.name, subject)
			}
		}
	}
}

func dnsQuery(t *testing.T, id uint16, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDNS(t *testing.T) {
	q1 := dnsQuery(t, 0x1234, "evil.Example.com.", dnsmessage.TypeAAAA)
	q2 := dnsQuery(t, 7, "c2.bad.", dnsmessage.TypeTXT)
	var resp dnsmessage.Message
	if err := resp.Unpack(q1); err != nil {
		t.Fatal(err)
	}
	resp.Header.Response = true
	answer, err := resp.Pack()
	if err != nil {
		t.Fatal(err)
	}

	var c Conn
	c.Init(17, 5353, 53)
	r := &recorder{}
	c.Datagram(stream.ToServer, q1, r.emit)
	c.Datagram(stream.ToClient, answer, r.emit)
	c.Datagram(stream.ToServer, q2, r.emit)
	if c.Proto() != rules.ProtoDNS || len(r.txs) != 2 {
		t.Fatalf("udp: proto %d, %v", c.Proto(), r.txs)
	}
	if r.txs[0].Buf[rules.BufDNSQuery] != "evil.Example.com" || *r.txs[0].DNS != (DNSInfo{Type: "query", ID: 0x1234, RRName: "evil.Example.com", RRType: "AAAA"}) {
		t.Errorf("udp query %v %+v", r.txs[0], r.txs[0].DNS)
	}
	if r.txs[1].DNS.RRType != "TXT" || r.txs[1].Buf[rules.BufDNSQuery] != "c2.bad" {
		t.Errorf("udp query 2 %+v", r.txs[1].DNS)
	}

	// DNS over TCP: records with their 2-byte length, one byte at a time.
	var wire []byte
	for _, m := range [][]byte{q1, q2} {
		wire = binary.BigEndian.AppendUint16(wire, uint16(len(m)))
		wire = append(wire, m...)
	}
	tr, p := feed([]msg{{stream.ToServer, string(wire)}}, 1)
	if p != rules.ProtoDNS || len(tr.txs) != 2 || tr.txs[1].Buf[rules.BufDNSQuery] != "c2.bad" {
		t.Fatalf("tcp: proto %d, %v", p, tr.txs)
	}
}

func TestDNSCompressionLoop(t *testing.T) {
	m := dnsQuery(t, 1, "a.b.", dnsmessage.TypeA)
	// Point the question's name at itself.
	m[12], m[13] = 0xc0, 12
	var c Conn
	c.Init(17, 1, 53)
	c.proto = rules.ProtoDNS
	r := &recorder{}
	c.Datagram(stream.ToServer, m, r.emit)
	if len(r.txs) != 0 {
		t.Fatalf("looping name gave %v", r.txs)
	}
}

// TestTLSCutBeforeCertificate: a TLS 1.2 server flight that ends after
// the ServerHello still gives the to_client Tx, at Close.
func TestTLSCutBeforeCertificate(t *testing.T) {
	conv := tlsHandshake(t, tls.VersionTLS12)
	if len(conv) < 2 || conv[1].dir != stream.ToClient {
		t.Fatalf("unexpected conversation shape")
	}
	srv := conv[1].data
	first := 5 + int(binary.BigEndian.Uint16([]byte(srv[3:5])))
	r, _ := feed([]msg{conv[0], {stream.ToClient, srv[:first]}}, 0)
	if len(r.txs) != 2 || r.txs[1].TLSVersion != 0x0303 || r.txs[1].Buf[rules.BufTLSCertSubject] != "" {
		t.Fatalf("%v", r.txs)
	}
}
