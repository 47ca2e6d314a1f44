package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// LoadOrCreateServerCert returns the manager's TLS certificate for hosts from
// dir/server.crt and dir/server.key, issuing and writing a new one (valid
// ServerCertTTL, key mode 0600) when there is none, when it was not issued by
// ca, when its names differ from hosts, or when less than a third of its
// lifetime is left.
func LoadOrCreateServerCert(dir string, ca *CA, hosts []string) (tls.Certificate, error) {
	names, ips, err := splitHosts(hosts)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: server certificate in %s: %w", dir, err)
	}
	certPath, keyPath := filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)
	if cert, ok := ca.reusableServerCert(certPath, keyPath, canonicalHosts(names, ips)); ok {
		return cert, nil
	}
	key, leaf, err := ca.issueServer(hosts, ServerCertTTL)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue server certificate for %v: %w", hosts, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue server certificate for %v: %w", hosts, err)
	}
	// Key first, then certificate: until the certificate is replaced the
	// pair does not match, and the next start simply issues again.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: write %s: %w", keyPath, err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: write %s: %w", certPath, err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// reusableServerCert loads the certificate on disk and reports whether it
// can still be served. Anything wrong with it (missing, unreadable, key
// mismatch) means "issue a new one": it is derived material.
func (ca *CA) reusableServerCert(certPath, keyPath string, want []string) (tls.Certificate, bool) {
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, false
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, false
		}
		cert.Leaf = leaf
	}
	now := ca.now()
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return tls.Certificate{}, false
	}
	if !slices.Equal(canonicalHosts(leaf.DNSNames, leaf.IPAddresses), want) {
		return tls.Certificate{}, false
	}
	if !now.Before(ServerCertRenewAt(leaf)) {
		return tls.Certificate{}, false
	}
	return cert, true
}

// ServerCertRenewAt is when LoadOrCreateServerCert will replace leaf: once
// less than a third of its lifetime is left. A long-running manager calls
// LoadOrCreateServerCert again after this time.
func ServerCertRenewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
}
