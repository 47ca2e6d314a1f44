package apps

import (
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
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// TLS versions as written in configurations.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// ParseTLSVersion turns "1.0".."1.3" into a crypto/tls version.
func ParseTLSVersion(s string) (uint16, error) {
	if v, ok := tlsVersions[strings.TrimPrefix(strings.ToLower(s), "tls")]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("TLS version %q: want 1.0, 1.1, 1.2 or 1.3", s)
}

// TLSVersionName is the inverse of ParseTLSVersion.
func TLSVersionName(v uint16) string {
	for k, x := range tlsVersions {
		if x == v {
			return k
		}
	}
	return fmt.Sprintf("0x%04x", v)
}

// TLSRange is a min and max TLS version, with defaults.
type TLSRange struct {
	MinTLS string `json:"minTLS,omitempty" yaml:"minTLS"`
	MaxTLS string `json:"maxTLS,omitempty" yaml:"maxTLS"`
}

func (r TLSRange) versions(defMin, defMax uint16) (lo, hi uint16, err error) {
	lo, hi = defMin, defMax
	var errs []error
	if r.MinTLS != "" {
		if lo, err = ParseTLSVersion(r.MinTLS); err != nil {
			errs = append(errs, &FieldError{Field: "minTLS", Err: err})
		}
	}
	if r.MaxTLS != "" {
		if hi, err = ParseTLSVersion(r.MaxTLS); err != nil {
			errs = append(errs, &FieldError{Field: "maxTLS", Err: err})
		}
	}
	if len(errs) == 0 && lo > hi {
		errs = append(errs, fieldErr("minTLS", "%s is above maxTLS %s", TLSVersionName(lo), TLSVersionName(hi)))
	}
	return lo, hi, joinErrs(errs)
}

// CA is a lab certificate authority: it issues the servers' certificates so
// that clients given its certificate can verify them.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a fresh lab CA (ECDSA P-256, valid ten years).
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Bulkhead lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{
		Cert: cert, Key: key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}

// ParseCA reads a CA from its PEM certificate and PKCS#8 (or EC/PKCS#1) key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate: not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("CA key: no PEM block")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key: cannot sign")
	}
	return &CA{Cert: cert, Key: signer, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Issue makes a server certificate for names (DNS names or IP addresses),
// with an RSA-2048 key if keyType is "rsa", else ECDSA P-256.
func (ca *CA) Issue(keyType string, names ...string) (tls.Certificate, error) {
	var key crypto.Signer
	var err error
	if keyType == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	cn := "lab"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Bulkhead lab"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// ClientTLS are the TLS settings of a client: versions, the CA to verify
// servers with (none: no verification, the lab's servers are self-issued),
// and the server name to send (SNI).
type ClientTLS struct {
	TLSRange   `yaml:",inline"`
	ServerName string `json:"serverName,omitempty" yaml:"serverName"`
	CACertPEM  string `json:"caCertPEM,omitempty" yaml:"-"`
}

func (c ClientTLS) validate() error {
	_, _, err := c.versions(tls.VersionTLS12, tls.VersionTLS13)
	return err
}

// config builds the client's tls.Config; host is the server name used when
// ServerName is empty.
func (c ClientTLS) config(host string) (*tls.Config, error) {
	lo, hi, err := c.versions(tls.VersionTLS12, tls.VersionTLS13)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: lo, MaxVersion: hi, ServerName: c.ServerName}
	if tc.ServerName == "" && net.ParseIP(host) == nil {
		tc.ServerName = host
	}
	if c.CACertPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.CACertPEM)) {
			return nil, errors.New("caCertPEM: no certificate")
		}
		tc.RootCAs = pool
		if tc.ServerName == "" {
			tc.ServerName = host
		}
	} else {
		tc.InsecureSkipVerify = true //nolint:gosec // lab servers issue their own certificates
	}
	if lo < tls.VersionTLS12 {
		// Legacy clients offered the CBC suites; Go's defaults keep them, but
		// say so explicitly so that a change of defaults shows up here.
		tc.CipherSuites = legacySuites
	}
	return tc, nil
}

// legacySuites are what a TLS 1.0/1.1 client offers, plus the TLS 1.2 AEAD
// suites so the same client can still meet a modern server.
var legacySuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}
