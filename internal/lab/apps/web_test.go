package apps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func startHTTPS(t *testing.T, minV, maxV, keyType string) (string, *logBuf) {
	t.Helper()
	logs, log := newLog()
	cfg := HTTPSConfig{TLSRange: TLSRange{MinTLS: minV, MaxTLS: maxV}, KeyType: keyType}
	addrs := startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunHTTPS(ctx, cfg) })
	return addrs["tcp"], logs
}

func tlsDial(addr string, minV, maxV uint16) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		MinVersion: minV, MaxVersion: maxV, InsecureSkipVerify: true, CipherSuites: legacySuites,
	})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// The legacy endpoint speaks TLS 1.0 and nothing newer; a modern client
// that insists on 1.2 is refused, and a modern endpoint refuses 1.0/1.1.
func TestHTTPSVersions(t *testing.T) {
	legacy, legacyLog := startHTTPS(t, "1.0", "1.0", "rsa")
	modern, _ := startHTTPS(t, "1.2", "1.3", "ecdsa")
	tests := []struct {
		name       string
		addr       string
		minV, maxV uint16
		want       uint16 // 0: the handshake must fail
	}{
		{"legacy server, TLS 1.0 client", legacy, tls.VersionTLS10, tls.VersionTLS10, tls.VersionTLS10},
		{"legacy server, client up to 1.3", legacy, tls.VersionTLS10, tls.VersionTLS13, tls.VersionTLS10},
		{"legacy server, 1.2-only client", legacy, tls.VersionTLS12, tls.VersionTLS12, 0},
		{"legacy server, 1.3-only client", legacy, tls.VersionTLS13, tls.VersionTLS13, 0},
		{"modern server, TLS 1.3 client", modern, tls.VersionTLS13, tls.VersionTLS13, tls.VersionTLS13},
		{"modern server, TLS 1.2 client", modern, tls.VersionTLS12, tls.VersionTLS12, tls.VersionTLS12},
		{"modern server, 1.0-only client", modern, tls.VersionTLS10, tls.VersionTLS10, 0},
		{"modern server, 1.1-only client", modern, tls.VersionTLS11, tls.VersionTLS11, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := tlsDial(tt.addr, tt.minV, tt.maxV)
			if tt.want == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded with %s, want a refusal", TLSVersionName(cs.Version))
				}
				t.Logf("refused as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if cs.Version != tt.want {
				t.Fatalf("negotiated %s, want %s", TLSVersionName(cs.Version), TLSVersionName(tt.want))
			}
			t.Logf("negotiated %s with %s", TLSVersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
		})
	}
	legacyLog.waitFor(t, 2*time.Second, "tls handshake", "version=1.0")
}

// The legacy client app gets a page over TLS 1.0 and logs the version.
func TestTLSClientApp(t *testing.T) {
	addr, serverLog := startHTTPS(t, "1.0", "1.3", "rsa")
	logs, log := newLog()
	cfg := TLSClientConfig{Pace: once(), URL: "https://" + addr + "/products",
		ClientTLS: ClientTLS{TLSRange: TLSRange{MinTLS: "1.0", MaxTLS: "1.0"}}}
	cfg.SetDefaults()
	cfg.Log = log
	runClient(t, 10*time.Second, func(ctx context.Context) error { return RunTLSClient(ctx, cfg) })
	logs.waitFor(t, time.Second, "msg=request", "status=200", "tls=1.0")
	serverLog.waitFor(t, time.Second, "msg=request", "uri=/products", "ua=\"Mozilla/4.0")
}

// A lab CA given to the server issues its certificate, and a client that
// trusts that CA verifies it by name.
func TestHTTPSWithLabCA(t *testing.T) {
	ca, err := NewCA("test lab CA")
	if err != nil {
		t.Fatal(err)
	}
	logs, log := newLog()
	_ = logs
	cfg := HTTPSConfig{TLSRange: TLSRange{MinTLS: "1.2", MaxTLS: "1.3"}, Names: []string{"www.lab.test", "127.0.0.1"},
		CACertPEM: string(ca.CertPEM), CAKeyPEM: string(ca.KeyPEM)}
	addr := startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunHTTPS(ctx, cfg) })["tcp"]
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	for _, name := range []string{"www.lab.test", "127.0.0.1"} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: name})
		if err != nil {
			t.Fatalf("verify as %s: %v", name, err)
		}
		c.Close()
	}
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "evil.test"}); err == nil {
		c.Close()
		t.Fatal("a name not in the certificate verified")
	}
}

// curl, a client that is not Go, gets pages from both endpoints with the
// versions the DPI tests will use.
func TestHTTPSWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (apt-get install curl): skipping the curl check of TLS 1.0 and 1.2")
	}
	legacy, legacyLog := startHTTPS(t, "1.0", "1.0", "rsa")
	modern, modernLog := startHTTPS(t, "1.2", "1.3", "ecdsa")
	// OpenSSL 3 refuses TLS 1.0 at its default security level (SHA-1
	// signatures); an old client is what we mean to be, so lower it.
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("curl", append([]string{"-sS", "-k", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("--tlsv1.0", "--tls-max", "1.0", "--ciphers", "DEFAULT@SECLEVEL=0", "https://"+legacy+"/"); !strings.HasPrefix(out, "200") {
		t.Fatalf("curl TLS 1.0: %s", out)
	}
	legacyLog.waitFor(t, 2*time.Second, "tls handshake", "version=1.0")
	if out := run("--tlsv1.2", "--tls-max", "1.2", "https://"+modern+"/products"); !strings.HasPrefix(out, "200") {
		t.Fatalf("curl TLS 1.2: %s", out)
	}
	modernLog.waitFor(t, 2*time.Second, "tls handshake", "version=1.2")
	if out := run("--tlsv1.3", "https://"+modern+"/"); !strings.HasPrefix(out, "200") {
		t.Fatalf("curl TLS 1.3: %s", out)
	}
	modernLog.waitFor(t, 2*time.Second, "tls handshake", "version=1.3")
	// And the modern endpoint refuses curl at TLS 1.0.
	cmd := exec.Command("curl", "-sS", "-k", "--max-time", "10", "-o", "/dev/null", "--tlsv1.0", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0", "https://"+modern+"/")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("curl --tls-max 1.1 reached the 1.2+ endpoint: %s", out)
	}
}

// The plain HTTP site serves its pages, assets and 404s, and logs each
// request with its raw URI.
func TestHTTPSite(t *testing.T) {
	logs, log := newLog()
	cfg := HTTPConfig{Users: map[string]string{"frank": "pw"}}
	addr := startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunHTTP(ctx, cfg) })["tcp"]
	for path, want := range map[string]int{
		"/": 200, "/products": 200, "/product?id=2": 200, "/product?id=99": 404, "/search?q=mug": 200,
		"/static/style.css": 200, "/robots.txt": 200, "/nope": 404, "/login": 200,
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if path == "/search?q=mug" && !strings.Contains(string(body), "Blue mug") {
			t.Errorf("search for mug did not find the Blue mug:\n%s", body)
		}
	}
	logs.waitFor(t, time.Second, "msg=request", "uri=\"/product?id=99\"", "status=404")
}
