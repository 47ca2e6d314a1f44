package pki

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v, key usage %v", c.IsCA, c.KeyUsage)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", c.PublicKey)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < CAValidity || life > CAValidity+time.Hour {
		t.Errorf("CA lifetime %s, want %s", life, CAValidity)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	for file, want := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", file, fi.Mode().Perm(), want)
		}
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil || !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Errorf("CertPEM differs from %s", CACertFile)
	}

	// Reload gives the same CA: same certificate, and what one instance
	// issued the other trusts (and the other way round).
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) || again.Fingerprint() != ca.Fingerprint() {
		t.Fatal("reloaded CA has another certificate")
	}
	if !publicKeyEqual(again.key.Public(), ca.key.Public()) {
		t.Fatal("reloaded CA has another key")
	}
	certPEM, _, err := again.IssueClient("agent-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate from the reloaded CA does not verify with the first: %v", err)
	}
}

func TestLoadOrCreateCARefuses(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  string
	}{
		{"key without cert", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CACertFile)) }, "ca.crt is missing"},
		{"cert without key", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CAKeyFile)) }, "ca.key is missing"},
		{"key readable by others", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, CAKeyFile), 0o644) }, "chmod 600"},
		{"key of another CA", func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := LoadOrCreateCA(other); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, CAKeyFile))
			os.WriteFile(filepath.Join(dir, CAKeyFile), b, 0o600)
		}, "does not hold the key"},
		{"garbage cert", func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, CACertFile), []byte("x"), 0o644) }, "no CERTIFICATE"},
		{"leaf instead of CA", func(t *testing.T, dir string) {
			ca, err := LoadOrCreateCA(dir)
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM, err := ca.IssueClient("x", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, CACertFile), certPEM, 0o644)
			os.WriteFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600)
		}, "not a CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreateCA(dir); err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, dir)
			keyMid, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
			_, err := LoadOrCreateCA(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one saying %q", err, tt.want)
			}
			// Nothing was overwritten.
			if keyAfter, _ := os.ReadFile(filepath.Join(dir, CAKeyFile)); !bytes.Equal(keyAfter, keyMid) {
				t.Error("a refused load rewrote ca.key")
			}
		})
	}
}

// serve accepts one TLS connection on a loopback listener, echoes one line
// and reports the handshake's outcome and the client's certificates.
type served struct {
	err   error
	peers []*x509.Certificate
}

func serve(t *testing.T, cfg *tls.Config) (addr string, result <-chan served) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan served, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- served{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			ch <- served{err: err}
			return
		}
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil {
			ch <- served{err: err}
			return
		}
		if _, err := tc.Write([]byte(line)); err != nil {
			ch <- served{err: err}
			return
		}
		ch <- served{peers: tc.ConnectionState().PeerCertificates}
	}()
	return ln.Addr().String(), ch
}

// roundTrip dials addr, sends a line and reads it back.
func roundTrip(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != "ping\n" {
		return errors.New("echo mismatch: " + got)
	}
	return nil
}

func TestServerHandshake(t *testing.T) {
	ca := newCA(t)
	cert, err := ca.IssueServer([]string{"127.0.0.1", "localhost", "::1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, serverName := range []string{"", "localhost"} {
		t.Run("name="+serverName, func(t *testing.T) {
			addr, result := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}})
			// An empty ServerName makes crypto/tls check the dialed IP.
			if err := roundTrip(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: serverName}); err != nil {
				t.Fatalf("client: %v", err)
			}
			if r := <-result; r.err != nil {
				t.Fatalf("server: %v", r.err)
			}
		})
	}

	t.Run("name not in certificate", func(t *testing.T) {
		addr, _ := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}})
		err := roundTrip(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "manager.example"})
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Errorf("client error = %v, want a hostname error", err)
		}
	})

	t.Run("client trusts another CA", func(t *testing.T) {
		addr, _ := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}})
		err := roundTrip(addr, &tls.Config{RootCAs: newCA(t).Pool()})
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("client error = %v, want an unknown authority error", err)
		}
	})
}

func newCSR(t *testing.T, cn string, dnsNames ...string) (csrPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn},
		DNSNames: dnsNames,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), keyPEM
}

func TestClientCertAuth(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	serverCert, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mtls := func() *tls.Config {
		return &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool(),
		}
	}

	// The agent's way: it keeps its key, sends a CSR asking for more than
	// it may have, and gets a client certificate with the CA's name.
	csrPEM, agentKey := newCSR(t, "evil", "manager.example")
	signed, err := ca.SignCSR(csrPEM, "agent-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	csrPair, err := tls.X509KeyPair(signed, agentKey)
	if err != nil {
		t.Fatal(err)
	}
	issuedPEM, issuedKey, err := ca.IssueClient("cli", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuedPair, err := tls.X509KeyPair(issuedPEM, issuedKey)
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM, foreignKey, err := other.IssueClient("agent-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignPair, err := tls.X509KeyPair(foreignPEM, foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	// A server certificate of the right CA is not a client identity.
	serverAsClient, err := ca.IssueServer([]string{"agent-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantCN string // "" = refused
	}{
		{"signed CSR", []tls.Certificate{csrPair}, "agent-1"},
		{"IssueClient", []tls.Certificate{issuedPair}, "cli"},
		{"another CA", []tls.Certificate{foreignPair}, ""},
		{"server certificate", []tls.Certificate{serverAsClient}, ""},
		{"no certificate", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, result := serve(t, mtls())
			clientErr := roundTrip(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: tt.certs})
			r := <-result
			if tt.wantCN == "" {
				// With TLS 1.3 the client may finish its handshake before
				// the server refuses; the server's side is what counts.
				if r.err == nil {
					t.Fatalf("server accepted the client (peer %v)", r.peers[0].Subject)
				}
				if clientErr == nil {
					t.Error("client round trip succeeded against a refusing server")
				}
				return
			}
			if clientErr != nil || r.err != nil {
				t.Fatalf("client: %v; server: %v", clientErr, r.err)
			}
			peer := r.peers[0]
			if peer.Subject.CommonName != tt.wantCN {
				t.Errorf("peer CN %q, want %q", peer.Subject.CommonName, tt.wantCN)
			}
			if len(peer.DNSNames) != 0 || len(peer.IPAddresses) != 0 {
				t.Errorf("peer certificate carries requested names %v %v", peer.DNSNames, peer.IPAddresses)
			}
			if !slices.Equal(peer.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || peer.IsCA {
				t.Errorf("peer ext key usage %v, IsCA %v; want client auth only", peer.ExtKeyUsage, peer.IsCA)
			}
		})
	}
}

func TestSignCSRRefuses(t *testing.T) {
	ca := newCA(t)
	good, _ := newCSR(t, "x")

	tampered := func() []byte {
		block, _ := pem.Decode(good)
		b := bytes.Clone(block.Bytes)
		b[len(b)-5] ^= 0xff // inside the signature
		return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: b})
	}()
	weakRSA := func() []byte {
		key, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, crypto.Signer(key))
		if err != nil {
			t.Skipf("cannot make a 1024-bit RSA CSR here: %v", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}()

	tests := []struct {
		name string
		csr  []byte
		cn   string
		ttl  time.Duration
		want string
	}{
		{"not PEM", []byte("hello"), "a", time.Hour, "no PEM block"},
		{"certificate instead", ca.CertPEM(), "a", time.Hour, "want CERTIFICATE REQUEST"},
		{"bad signature", tampered, "a", time.Hour, "signature"},
		{"weak RSA key", weakRSA, "a", time.Hour, "at least 2048"},
		{"empty CN", good, "", time.Hour, "empty common name"},
		{"zero ttl", good, "a", 0, "not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.SignCSR(tt.csr, tt.cn, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "pki: sign CSR") {
				t.Errorf("error = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestIssueServer(t *testing.T) {
	ca := newCA(t)
	cert, err := ca.IssueServer([]string{"Manager.Example", "10.1.2.3", "::ffff:10.1.2.4", "2001:db8::1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if got, want := canonicalHosts(leaf.DNSNames, leaf.IPAddresses), []string{"10.1.2.3", "10.1.2.4", "2001:db8::1", "manager.example"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || leaf.IsCA {
		t.Errorf("ext key usage %v, IsCA %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	if d := leaf.NotAfter.Sub(time.Now()); d > 24*time.Hour || d < 23*time.Hour {
		t.Errorf("valid for %s more, want about 24h", d)
	}

	// Nothing outlives the CA.
	long, err := ca.IssueServer([]string{"a"}, 2*CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if !long.Leaf.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", long.Leaf.NotAfter, ca.Certificate().NotAfter)
	}

	for _, hosts := range [][]string{nil, {""}, {"a b"}, {"-a.example"}, {"fe80::1%eth0"}} {
		if _, err := ca.IssueServer(hosts, time.Hour); err == nil {
			t.Errorf("IssueServer(%q) succeeded", hosts)
		}
	}
}

func TestLoadOrCreateServerCert(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"localhost", "127.0.0.1"}
	first, err := LoadOrCreateServerCert(dir, ca, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ServerKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key: %v, %v; want mode 0600", fi, err)
	}
	if life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore); life < ServerCertTTL {
		t.Errorf("server certificate lifetime %s, want %s", life, ServerCertTTL)
	}
	der := func(c tls.Certificate) []byte { return c.Certificate[0] }

	// Same hosts in another order: the certificate on disk is kept.
	again, err := LoadOrCreateServerCert(dir, ca, []string{"127.0.0.1", "LOCALHOST"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(der(again), der(first)) || again.Leaf == nil {
		t.Error("same hosts: certificate was reissued")
	}

	// Hosts changed: reissued with the new names, and written.
	changed, err := LoadOrCreateServerCert(dir, ca, []string{"localhost", "127.0.0.1", "manager.example"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(der(changed), der(first)) || !slices.Contains(changed.Leaf.DNSNames, "manager.example") {
		t.Error("changed hosts: certificate was not reissued with the new name")
	}
	onDisk, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err != nil || !bytes.Equal(der(onDisk), der(changed)) {
		t.Errorf("reissued certificate not on disk: %v", err)
	}

	// Near expiry: a certificate issued 50 minutes ago for an hour.
	ca.now = func() time.Time { return time.Now().Add(-50 * time.Minute) }
	key, leaf, err := ca.issueServer(hosts, time.Hour)
	ca.now = time.Now
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, dir, key, leaf)
	renewed, err := LoadOrCreateServerCert(dir, ca, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(der(renewed), leaf.Raw) {
		t.Error("certificate with 10 minutes left was not reissued")
	}

	// Issued by another CA (the data dir's CA was replaced): reissued.
	other := newCA(t)
	key, leaf, err = other.issueServer(hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, dir, key, leaf)
	mine, err := LoadOrCreateServerCert(dir, ca, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if err := mine.Leaf.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Errorf("certificate of another CA was kept: %v", err)
	}

	// Garbage on disk: reissued.
	os.WriteFile(filepath.Join(dir, ServerCertFile), []byte("junk"), 0o644)
	if _, err := LoadOrCreateServerCert(dir, ca, hosts); err != nil {
		t.Errorf("corrupt server.crt: %v", err)
	}

	// The result serves TLS.
	addr, result := serve(t, &tls.Config{Certificates: []tls.Certificate{mine}})
	if err := roundTrip(addr, &tls.Config{RootCAs: ca.Pool()}); err != nil {
		t.Fatalf("client: %v", err)
	}
	if r := <-result; r.err != nil {
		t.Fatalf("server: %v", r.err)
	}

	if _, err := LoadOrCreateServerCert(dir, ca, nil); err == nil {
		t.Error("no hosts: succeeded")
	}
}

func writePair(t *testing.T, dir string, key crypto.Signer, leaf *x509.Certificate) {
	t.Helper()
	keyPEM, err := encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, ServerKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	if err := writeFileAtomic(filepath.Join(dir, ServerCertFile), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
}
