package applayer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// leafSerial has its high bit set, so DER puts a zero byte before it.
var leafSerial = []byte{0xE7, 0xF9, 0xB6, 0xDE, 0xA6, 0x57, 0x93, 0xE2, 0x44, 0x6A, 0x3B, 0x95, 0xC6, 0xB3, 0xEC, 0xDF}

const (
	wantSerial = "00:E7:F9:B6:DE:A6:57:93:E2:44:6A:3B:95:C6:B3:EC:DF"
	// rootOnly is in the root certificate only (its SAN): the leaf
	// repeats the root's subject as its issuer, not its extensions.
	rootOnly = "root-only.k.example"
)

// chainCert is a server certificate for shop.example signed by a test root
// CA, served with the root as the chain's second certificate.
func chainCert(t testing.TB) (cert tls.Certificate, leafDER, rootDER []byte) {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{Organization: []string{"Bulkhead Test Root K"}, CommonName: "Root K"},
		DNSNames:              []string{rootOnly},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	rootDER, err = x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = x509.ParseCertificate(rootDER); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(leafSerial),
		Subject:      pkix.Name{Country: []string{"US"}, Organization: []string{"Shop Inc"}, CommonName: "shop.example"},
		DNSNames:     []string{"shop.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	leafDER, err = x509.CreateCertificate(rand.Reader, leaf, root, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(leafDER), rootOnly) || !strings.Contains(string(rootDER), rootOnly) {
		t.Fatal("test chain: the root-only string is not in the root only")
	}
	return tls.Certificate{Certificate: [][]byte{leafDER, rootDER}, PrivateKey: key}, leafDER, rootDER
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestTLSCertChain: a real TLS 1.2 handshake with a two-certificate
// chain gives the ClientHello's Tx (ja3.string), the server's Tx (the
// first certificate as tls.certs, its serial, ja3s.hash) and one more Tx
// for the second certificate, however the bytes are segmented.
func TestTLSCertChain(t *testing.T) {
	cert, leafDER, rootDER := chainCert(t)
	conv, cs := tlsConversation(t, tls.VersionTLS12, cert)
	wantJA3SPrefix := fmt.Sprintf("771,%d,", cs.CipherSuite)
	for _, chunk := range []int{0, 1, 7, 100} {
		r, p := feed(conv, chunk)
		if p != rules.ProtoTLS {
			t.Fatalf("chunk %d: proto %v", chunk, p)
		}
		if len(r.txs) != 3 {
			t.Fatalf("chunk %d: %d transactions, want 3: %v", chunk, len(r.txs), r.txs)
		}
		hello, server, second := r.txs[0], r.txs[1], r.txs[2]

		js := hello.Buf[rules.BufJA3String]
		if !strings.HasPrefix(js, "771,") || hello.TLS.JA3 == nil || js != hello.TLS.JA3.String || md5Hex(js) != hello.Buf[rules.BufJA3Hash] {
			t.Errorf("chunk %d: ja3.string %q, ja3.hash %q, EVE %+v", chunk, js, hello.Buf[rules.BufJA3Hash], hello.TLS.JA3)
		}
		for _, b := range []rules.Buffer{rules.BufTLSCerts, rules.BufTLSCertSerial, rules.BufJA3SHash} {
			if _, ok := hello.Buf[b]; ok {
				t.Errorf("chunk %d: the ClientHello's Tx has %v", chunk, b)
			}
		}

		if server.Dir != stream.ToClient || server.Continues || server.TLSVersion != 0x0303 {
			t.Errorf("chunk %d: server Tx %v", chunk, server)
		}
		if server.Buf[rules.BufTLSCerts] != string(leafDER) {
			t.Errorf("chunk %d: server Tx tls.certs is not the leaf certificate (%d bytes)", chunk, len(server.Buf[rules.BufTLSCerts]))
		}
		if server.Buf[rules.BufTLSCertSerial] != wantSerial || server.TLS.Serial != wantSerial {
			t.Errorf("chunk %d: serial %q, EVE %q, want %q", chunk, server.Buf[rules.BufTLSCertSerial], server.TLS.Serial, wantSerial)
		}
		ja3s := server.TLS.JA3S
		if ja3s == nil || !strings.HasPrefix(ja3s.String, wantJA3SPrefix) || md5Hex(ja3s.String) != ja3s.Hash || server.Buf[rules.BufJA3SHash] != ja3s.Hash {
			t.Errorf("chunk %d: ja3s %+v, buffer %q, want a string starting %q", chunk, ja3s, server.Buf[rules.BufJA3SHash], wantJA3SPrefix)
		} else if exts := "-" + ja3s.String[len(wantJA3SPrefix):] + "-"; !strings.Contains(exts, "-65281-") || !strings.Contains(exts, "-0-") {
			// Go's server answers renegotiation_info and acknowledges
			// the SNI.
			t.Errorf("chunk %d: ja3s %q lacks extension 65281 or 0", chunk, ja3s.String)
		}
		if _, ok := server.Buf[rules.BufJA3String]; ok {
			t.Errorf("chunk %d: the server's Tx has ja3.string", chunk)
		}

		if second.Dir != stream.ToClient || !second.Continues || second.ID != server.ID || second.TLSVersion != 0 || second.TLS == nil ||
			second.TLS.Subject != server.TLS.Subject {
			t.Errorf("chunk %d: second certificate's Tx %v %+v", chunk, second, second.TLS)
		}
		if len(second.Buf) != 1 || second.Buf[rules.BufTLSCerts] != string(rootDER) || !strings.Contains(second.Buf[rules.BufTLSCerts], rootOnly) {
			t.Errorf("chunk %d: second certificate's Tx buffers %v", chunk, keys(second.Buf))
		}
	}
}

func keys(m map[rules.Buffer]string) []rules.Buffer {
	var out []rules.Buffer
	for b := range m {
		out = append(out, b)
	}
	return out
}

// TestTLS13JA3S: in TLS 1.3 the ServerHello is still in the clear (JA3S),
// the certificates are not.
func TestTLS13JA3S(t *testing.T) {
	cert, _, _ := chainCert(t)
	conv, cs := tlsConversation(t, tls.VersionTLS13, cert)
	for _, chunk := range []int{0, 1, 100} {
		r, _ := feed(conv, chunk)
		if len(r.txs) != 2 {
			t.Fatalf("chunk %d: %d transactions: %v", chunk, len(r.txs), r.txs)
		}
		server := r.txs[1]
		ja3s := server.TLS.JA3S
		// The legacy version (1.2) and the supported_versions extension (43).
		want := fmt.Sprintf("771,%d,", cs.CipherSuite)
		if server.TLSVersion != 0x0304 || ja3s == nil || !strings.HasPrefix(ja3s.String, want) ||
			!strings.Contains("-"+ja3s.String[len(want):]+"-", "-43-") || server.Buf[rules.BufJA3SHash] != md5Hex(ja3s.String) {
			t.Errorf("chunk %d: server Tx %v ja3s %+v", chunk, server, ja3s)
		}
		for _, b := range []rules.Buffer{rules.BufTLSCerts, rules.BufTLSCertSerial, rules.BufTLSCertSubject} {
			if _, ok := server.Buf[b]; ok {
				t.Errorf("chunk %d: TLS 1.3 server Tx has %v", chunk, b)
			}
		}
	}
}

// serverHello builds a ServerHello record: the legacy version, a cipher,
// and extensions (type, data).
func serverHello(version, cipher uint16, exts [][2]any, withExts bool) string {
	body := binary.BigEndian.AppendUint16(nil, version)
	body = append(body, make([]byte, 32)...) // random
	body[2] = 1                              // not a HelloRetryRequest
	body = append(body, 0)                   // session id
	body = binary.BigEndian.AppendUint16(body, cipher)
	body = append(body, 0) // compression
	if withExts {
		var e []byte
		for _, x := range exts {
			data := []byte(x[1].(string))
			e = binary.BigEndian.AppendUint16(e, x[0].(uint16))
			e = binary.BigEndian.AppendUint16(e, uint16(len(data)))
			e = append(e, data...)
		}
		body = binary.BigEndian.AppendUint16(body, uint16(len(e)))
		body = append(body, e...)
	}
	hs := append([]byte{hsServerHello, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := append([]byte{recordHandshake, 3, 3, byte(len(hs) >> 8), byte(len(hs))}, hs...)
	return string(rec)
}

// TestJA3SStrings checks the JA3S string on ServerHellos built by hand
// (expected strings written from the JA3S definition).
func TestJA3SStrings(t *testing.T) {
	hello := tlsHandshake(t, tls.VersionTLS12)[0]
	tests := []struct {
		name   string
		record string
		want   string
	}{
		{"usual", serverHello(0x0303, 0xc02f, [][2]any{{uint16(0xff01), "\x00"}, {uint16(0), ""}, {uint16(11), "\x01\x00"}, {uint16(35), ""}, {uint16(16), "\x00\x09\x08http/1.1"}}, true),
			"771,49199,65281-0-11-35-16"},
		{"grease skipped", serverHello(0x0303, 0x009c, [][2]any{{uint16(0x2a2a), ""}, {uint16(23), ""}, {uint16(0xfafa), "x"}}, true),
			"771,156,23"},
		{"no extensions", serverHello(0x0301, 0x002f, nil, false), "769,47,"},
		{"empty extensions", serverHello(0x0302, 0x0035, nil, true), "770,53,"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1} {
			r, _ := feed([]msg{hello, {stream.ToClient, tt.record}}, chunk)
			if len(r.txs) != 2 {
				t.Fatalf("%s: %d transactions: %v", tt.name, len(r.txs), r.txs)
			}
			s := r.txs[1]
			if s.TLS.JA3S == nil || s.TLS.JA3S.String != tt.want || s.Buf[rules.BufJA3SHash] != md5Hex(tt.want) || s.TLS.JA3S.Hash != md5Hex(tt.want) {
				t.Errorf("%s chunk %d: ja3s %+v buffer %q, want %q (%s)", tt.name, chunk, s.TLS.JA3S, s.Buf[rules.BufJA3SHash], tt.want, md5Hex(tt.want))
			}
		}
	}
}

// TestTLSBadServerFlight: broken ServerHello extensions and a broken
// Certificate message give no JA3S or certificates, and no crash; the
// server's Tx still comes.
func TestTLSBadServerFlight(t *testing.T) {
	hello := tlsHandshake(t, tls.VersionTLS12)[0]
	good := serverHello(0x0303, 0xc02f, [][2]any{{uint16(0xff01), "\x00"}}, true)
	// An extension whose length runs past the list: dpi's reader is
	// lenient about it, the JA3S reader is not.
	badExt := []byte(good)
	badExt[len(badExt)-2] = 9
	cert := func(body []byte) string {
		hs := append([]byte{hsCertificate, 0, byte(len(body) >> 8), byte(len(body))}, body...)
		return string(append([]byte{recordHandshake, 3, 3, byte(len(hs) >> 8), byte(len(hs))}, hs...))
	}
	tests := []struct {
		name   string
		server string
		ja3s   bool
	}{
		{"bad extension length", string(badExt), false},
		{"certificate list longer than the message", good + cert([]byte{0, 0, 9, 0, 0, 1, 'x'}), true},
		{"certificate not DER", good + cert([]byte{0, 0, 4, 0, 0, 1, 'x'}), true},
		{"empty certificate list", good + cert([]byte{0, 0, 0}), true},
	}
	for _, tt := range tests {
		r, _ := feed([]msg{hello, {stream.ToClient, tt.server}}, 0)
		if len(r.txs) < 2 {
			t.Fatalf("%s: %d transactions: %v", tt.name, len(r.txs), r.txs)
		}
		s := r.txs[1]
		if _, ok := s.Buf[rules.BufJA3SHash]; ok != tt.ja3s {
			t.Errorf("%s: ja3s.hash present %v, want %v", tt.name, ok, tt.ja3s)
		}
		if _, ok := s.Buf[rules.BufTLSCertSerial]; ok {
			t.Errorf("%s: a serial from a broken certificate", tt.name)
		}
		if tt.name == "certificate not DER" {
			if s.Buf[rules.BufTLSCerts] != "x" || len(r.txs) != 2 {
				// The bytes are still inspected as the certificate.
				t.Errorf("%s: tls.certs %q, %d transactions", tt.name, s.Buf[rules.BufTLSCerts], len(r.txs))
			}
		} else if _, ok := s.Buf[rules.BufTLSCerts]; ok || len(r.txs) != 2 {
			t.Errorf("%s: tls.certs %q, %d transactions", tt.name, s.Buf[rules.BufTLSCerts], len(r.txs))
		}
	}
}

// TestHTTPAcceptHeaders: Accept-Encoding and Accept-Language are the
// request's buffers, not repeated on the response's Tx.
func TestHTTPAcceptHeaders(t *testing.T) {
	req := "GET /a HTTP/1.1\r\nHost: shop\r\nAccept-Encoding: gzip, deflate, br\r\naccept-language: en-US,en;q=0.5\r\n\r\n" +
		"GET /b HTTP/1.1\r\nHost: shop\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	for _, chunk := range []int{0, 1, 9} {
		r, _ := feed([]msg{{stream.ToServer, req}, {stream.ToClient, resp}}, chunk)
		if len(r.txs) != 4 {
			t.Fatalf("chunk %d: %d transactions: %v", chunk, len(r.txs), r.txs)
		}
		a := r.txs[0]
		if a.Dir != stream.ToServer || a.Buf[rules.BufHTTPAcceptEnc] != "gzip, deflate, br" || a.Buf[rules.BufHTTPAcceptLang] != "en-US,en;q=0.5" {
			t.Errorf("chunk %d: first request %v", chunk, a)
		}
		for _, tx := range r.txs[1:] {
			if tx.Dir == stream.ToServer && tx.Buf[rules.BufHTTPURI] == "/a" {
				continue
			}
			for _, b := range []rules.Buffer{rules.BufHTTPAcceptEnc, rules.BufHTTPAcceptLang} {
				if v, ok := tx.Buf[b]; ok {
					t.Errorf("chunk %d: %v %s has %v %q", chunk, tx.Dir, tx.Buf[rules.BufHTTPURI], b, v)
				}
			}
		}
	}
}

// Segment is one direction's bytes of a recorded conversation, exported
// for the engine test (package applayer_test).
type Segment struct {
	Dir  stream.Dir
	Data []byte
}

// ChainConversation records a real TLS 1.2 handshake with the two-
// certificate chain of chainCert, for the engine test.
func ChainConversation(t testing.TB) []Segment {
	cert, _, _ := chainCert(t)
	conv, _ := tlsConversation(t, tls.VersionTLS12, cert)
	out := make([]Segment, len(conv))
	for i, m := range conv {
		out[i] = Segment{m.dir, []byte(m.data)}
	}
	return out
}

// JA3S returns the JA3S hash the application layer computes for a
// conversation, for rules written against it.
func JA3S(t testing.TB, conv []Segment) string {
	r := &recorder{}
	var c Conn
	c.Init(6, 40000, 443)
	for _, s := range conv {
		c.Stream(s.Dir, s.Data, r.emit)
	}
	c.Close(r.emit)
	for _, tx := range r.txs {
		if h, ok := tx.Buf[rules.BufJA3SHash]; ok {
			return h
		}
	}
	t.Fatal("no ja3s.hash in the conversation")
	return ""
}
