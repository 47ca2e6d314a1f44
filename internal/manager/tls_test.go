package manager

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
)

func tlsConfig(tm *testManager) *tls.Config {
	return &tls.Config{RootCAs: tm.srv.CA().Pool()}
}

// TestPlainHTTPRefused: the manager speaks only TLS.
func TestPlainHTTPRefused(t *testing.T) {
	tm := startManager(t)
	resp, err := http.Get(strings.Replace(tm.url, "https://", "http://", 1) + "/api/v1/whoami")
	if err != nil {
		return // connection refused/reset is a refusal too
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), `"role"`) {
		t.Errorf("plain HTTP: %d %s, want a 400 from the TLS layer", resp.StatusCode, body)
	}
}

// TestUntrustedCARefused: a client that does not trust the manager's CA
// cannot talk to it.
func TestUntrustedCARefused(t *testing.T) {
	tm := startManager(t)
	_, err := http.Get(tm.url + "/healthz")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("request with system roots: %v, want a certificate error", err)
	}
}
