// Package pki is the manager's certificate authority: it creates the CA in
// the data directory on first start and issues the manager's server
// certificate and the agents' client certificates from it.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside the data directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

const (
	// CAValidity is the lifetime of a CA created by LoadOrCreateCA.
	CAValidity = 10 * 365 * 24 * time.Hour
	// ServerCertTTL is the lifetime of a certificate written by
	// LoadOrCreateServerCert.
	ServerCertTTL = 365 * 24 * time.Hour
	// backdate covers clocks that run a little behind the manager's.
	backdate = 5 * time.Minute
)

// CA is a certificate authority whose key is held in memory.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	now     func() time.Time
}

// LoadOrCreateCA loads dir/ca.crt and dir/ca.key, or creates both (ECDSA
// P-256, valid ten years, key mode 0600) when neither exists. It refuses a
// directory holding only one of the two, a key that does not match the
// certificate, and a key that others can read.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA from %s: %w", dir, err)
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA from %s: %w", dir, err)
	}
	switch {
	case certExists && keyExists:
		ca, err := loadCA(certPath, keyPath)
		if err != nil {
			return nil, fmt.Errorf("pki: load CA from %s: %w", dir, err)
		}
		return ca, nil
	case certExists != keyExists:
		// Never replace half a CA: the other half may be all that is left
		// of one that agents trust.
		have, missing := CACertFile, CAKeyFile
		if keyExists {
			have, missing = CAKeyFile, CACertFile
		}
		return nil, fmt.Errorf("pki: load CA from %s: %s exists but %s is missing", dir, have, missing)
	}
	ca, err := createCA(dir, certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA in %s: %w", dir, err)
	}
	return ca, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func createCA(dir, certPath, keyPath string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The serial in the name tells two installations' CAs apart in
		// a trust store.
		Subject:               pkix.Name{Organization: []string{"Bulkhead"}, CommonName: fmt.Sprintf("Bulkhead CA %.8s", serial.Text(16))},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a crash in between leaves a key without a certificate,
	// which LoadOrCreateCA reports instead of silently making a new CA.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return loadCA(certPath, keyPath)
}

func loadCA(certPath, keyPath string) (*CA, error) {
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o lets others read the CA key; chmod 600 it", keyPath, perm)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !publicKeyEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	ca := &CA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), now: time.Now}
	if now := ca.now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%s expired at %s", certPath, cert.NotAfter.Format(time.RFC3339))
	}
	return ca, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate, PEM encoded, for clients to trust.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Pool returns a new pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Fingerprint is the SHA-256 of the CA certificate, hex encoded: what an
// operator compares when pinning the CA out of band.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// IssueServer issues a TLS server certificate for hosts (DNS names and IP
// addresses) with a fresh ECDSA P-256 key.
func (ca *CA) IssueServer(hosts []string, ttl time.Duration) (tls.Certificate, error) {
	key, leaf, err := ca.issueServer(hosts, ttl)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue server certificate for %v: %w", hosts, err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func (ca *CA) issueServer(hosts []string, ttl time.Duration) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	names, ips, err := splitHosts(hosts)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	cn := hosts[0]
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    names,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leaf, err := ca.sign(tmpl, key.Public(), ttl)
	if err != nil {
		return nil, nil, err
	}
	return key, leaf, nil
}

// IssueClient issues a client certificate for commonName with a fresh ECDSA
// P-256 key, both PEM encoded.
func (ca *CA) IssueClient(commonName string, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	fail := func(err error) ([]byte, []byte, error) {
		return nil, nil, fmt.Errorf("pki: issue client certificate %q: %w", commonName, err)
	}
	if commonName == "" {
		return fail(errors.New("empty common name"))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(fmt.Errorf("generate key: %w", err))
	}
	leaf, err := ca.sign(clientTemplate(commonName), key.Public(), ttl)
	if err != nil {
		return fail(err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return fail(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), keyPEM, nil
}

// SignCSR issues a client certificate for the key in a PEM certificate
// request. Only the key is taken from the request: the CA sets the common
// name, drops any names or extensions the requester asked for, and allows
// client authentication only.
func (ca *CA) SignCSR(csrPEM []byte, commonName string, ttl time.Duration) ([]byte, error) {
	leaf, err := ca.signCSR(csrPEM, commonName, ttl)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CSR for %q: %w", commonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), nil
}

func (ca *CA) signCSR(csrPEM []byte, commonName string, ttl time.Duration) (*x509.Certificate, error) {
	if commonName == "" {
		return nil, errors.New("empty common name")
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE REQUEST", block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	// The signature proves the requester holds the key.
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return ca.sign(clientTemplate(commonName), csr.PublicKey, ttl)
}

func clientTemplate(commonName string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// checkPublicKey refuses keys too weak to trust with a client identity.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %s not allowed", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("public key type %T not allowed", pub)
}

// sign completes tmpl (serial, validity, not a CA) and signs it. The
// validity never outlasts the CA's.
func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, ttl time.Duration) (*x509.Certificate, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("ttl %s is not positive", ttl)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(ttl)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return x509.ParseCertificate(der)
}

// newSerial returns a random 128-bit serial number, as CAs must use
// unpredictable serials.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never 0
}

// splitHosts sorts hosts into DNS names and IP addresses, refusing what is
// neither.
func splitHosts(hosts []string) (names []string, ips []net.IP, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("no hosts")
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			if a.Zone() != "" {
				return nil, nil, fmt.Errorf("host %q: zoned address", h)
			}
			ips = append(ips, net.IP(a.Unmap().AsSlice()))
			continue
		}
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
		names = append(names, strings.ToLower(h))
	}
	return names, ips, nil
}

func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// canonicalHosts is the sorted, de-duplicated form of hosts used to compare
// a certificate's names with the ones wanted.
func canonicalHosts(names []string, ips []net.IP) []string {
	out := make([]string, 0, len(names)+len(ips))
	for _, n := range names {
		out = append(out, strings.ToLower(n))
	}
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap().String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", key)
	}
	return signer, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// writeFileAtomic replaces path with data so that a reader sees the old file
// or the new one, never a part, and a crash leaves one of the two.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		// The rename is durable once the directory is synced.
		d.Sync()
		d.Close()
	}
	return nil
}
