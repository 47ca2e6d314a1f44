package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

// Files in the state dir.
const (
	KeyFile     = "agent.key"
	CertFile    = "agent.crt"
	CAFile      = "ca.crt"
	DesiredFile = "desired.pb"
)

// MaxDesiredStateBytes bounds one desired state the agent accepts.
const MaxDesiredStateBytes = 512 << 20

// creds is what the agent proves itself with and whom it trusts.
type creds struct {
	cert tls.Certificate
	ca   *x509.Certificate
}

func (a *Agent) path(name string) string { return filepath.Join(a.cfg.StateDir, name) }

// credentials loads the host's certificate from the state dir, or enrolls
// with the bootstrap token to get one.
func (a *Agent) credentials(ctx context.Context) (*creds, error) {
	c, err := a.loadCreds()
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if a.cfg.BootstrapToken == "" {
		return nil, fmt.Errorf("agent: not enrolled (no %s in %s): pass a bootstrap token from 'bulkhead token create'", CertFile, a.cfg.StateDir)
	}
	return a.enroll(ctx)
}

func (a *Agent) loadCreds() (*creds, error) {
	certPEM, err := os.ReadFile(a.path(CertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(a.path(KeyFile))
	if err != nil {
		return nil, fmt.Errorf("agent: %s exists but its key does not: %w", CertFile, err)
	}
	caPEM, err := os.ReadFile(a.path(CAFile))
	if err != nil {
		return nil, fmt.Errorf("agent: %s exists but the CA does not: %w", CertFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("agent: load %s: %w", a.path(CertFile), err)
	}
	ca, err := parseCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("agent: load %s: %w", a.path(CAFile), err)
	}
	if err := a.checkTrust(ca); err != nil {
		return nil, fmt.Errorf("agent: %s: %w", a.path(CAFile), err)
	}
	if cn := pair.Leaf.Subject.CommonName; cn != a.cfg.HostName {
		return nil, fmt.Errorf("agent: %s was enrolled as host %q, not %q: use --host-name %s, or another state dir", a.cfg.StateDir, cn, a.cfg.HostName, cn)
	}
	if now := time.Now(); now.After(pair.Leaf.NotAfter) {
		return nil, fmt.Errorf("agent: certificate %s expired at %s: remove it and enroll again with a new bootstrap token", a.path(CertFile), pair.Leaf.NotAfter.Format(time.RFC3339))
	}
	return &creds{cert: pair, ca: ca}, nil
}

// checkTrust refuses a CA other than the one the operator named.
func (a *Agent) checkTrust(ca *x509.Certificate) error {
	switch {
	case a.cfg.CAFingerprint != "":
		want, _ := parseFingerprint(a.cfg.CAFingerprint)
		if got := sha256.Sum256(ca.Raw); !bytes.Equal(got[:], want) {
			return fmt.Errorf("CA fingerprint %x, want %s", got, a.cfg.CAFingerprint)
		}
	case a.cfg.CAFile != "":
		want, err := a.trustedCAFile()
		if err != nil {
			return err
		}
		if !want.Equal(ca) {
			return fmt.Errorf("CA %q is not the one in %s", ca.Subject.CommonName, a.cfg.CAFile)
		}
	}
	return nil
}

func (a *Agent) trustedCAFile() (*x509.Certificate, error) {
	b, err := os.ReadFile(a.cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	ca, err := parseCert(b)
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", a.cfg.CAFile, err)
	}
	return ca, nil
}

func parseFingerprint(s string) ([]byte, error) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(s, "sha256:"), ":", ""))
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%q is not a SHA-256 in hex (64 digits)", s)
	}
	return b, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// serverName is the name the manager's certificate must carry: the host
// part of the manager address.
func (a *Agent) serverName() string {
	host, _, err := net.SplitHostPort(a.cfg.Manager)
	if err != nil {
		return a.cfg.Manager
	}
	return host
}

// enrollTLS trusts the manager named by --ca or --ca-fingerprint. With a
// fingerprint, the manager must send the CA in its chain (it does), and the
// server certificate must verify against that CA for the dialed name.
func (a *Agent) enrollTLS() (*tls.Config, error) {
	name := a.serverName()
	switch {
	case a.cfg.CAFile != "":
		ca, err := a.trustedCAFile()
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		return &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}, nil
	case a.cfg.CAFingerprint != "":
		want, _ := parseFingerprint(a.cfg.CAFingerprint)
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			ServerName: name,
			// Verification is not skipped: VerifyConnection does it, with
			// the pinned CA as the only root.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				return verifyPinned(cs.PeerCertificates, want, name)
			},
		}, nil
	}
	return nil, errors.New("agent: to enroll, say which manager to trust: --ca FILE or --ca-fingerprint SHA256 (both printed by 'bulkhead token create')")
}

func verifyPinned(chain []*x509.Certificate, fingerprint []byte, name string) error {
	if len(chain) == 0 {
		return errors.New("manager sent no certificate")
	}
	var ca *x509.Certificate
	for _, c := range chain[1:] {
		if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], fingerprint) && c.IsCA {
			ca = c
		}
	}
	if ca == nil {
		return fmt.Errorf("manager's certificate chain holds no CA with fingerprint %x", fingerprint)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// enroll generates the host's key, sends a certificate request with the
// bootstrap token, and writes key, certificate and CA to the state dir.
// While the manager is unreachable it retries; a refusal ends it.
func (a *Agent) enroll(ctx context.Context) (*creds, error) {
	tlsCfg, err := a.enrollTLS()
	if err != nil {
		return nil, err
	}
	key, keyPEM, err := loadOrCreateKey(a.path(KeyFile))
	if err != nil {
		return nil, fmt.Errorf("agent: key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: a.cfg.HostName}}, key)
	if err != nil {
		return nil, fmt.Errorf("agent: certificate request: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})

	conn, err := grpc.NewClient(a.cfg.Manager, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("agent: manager %s: %w", a.cfg.Manager, err)
	}
	defer conn.Close()
	client := agentapi.NewAgentClient(conn)
	bo := newBackoff(a.cfg.BackoffMin, a.cfg.BackoffMax)
	var resp *agentapi.EnrollResponse
	for {
		rctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		resp, err = client.Enroll(rctx, &agentapi.EnrollRequest{BootstrapToken: a.cfg.BootstrapToken, HostName: a.cfg.HostName, CsrPem: csrPEM})
		cancel()
		if err == nil {
			break
		}
		switch msg := status.Convert(err).Message(); status.Code(err) {
		case codes.Unavailable:
			// A manager we do not trust will not become trustworthy by
			// asking again.
			if strings.Contains(msg, "authentication handshake failed") {
				return nil, fmt.Errorf("agent: enroll with %s: the manager is not the one --ca/--ca-fingerprint names: %s", a.cfg.Manager, msg)
			}
		case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal:
		default:
			return nil, fmt.Errorf("agent: enrollment refused: %s", msg)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		d := bo.next()
		a.log.Warn("cannot reach the manager to enroll; retrying", "manager", a.cfg.Manager, "err", err, "retry_in", d)
		if !sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}

	ca, err := parseCert(resp.GetCaPem())
	if err != nil {
		return nil, fmt.Errorf("agent: enrollment answer: CA: %w", err)
	}
	if err := a.checkTrust(ca); err != nil {
		return nil, fmt.Errorf("agent: enrollment answer: %w", err)
	}
	pair, err := tls.X509KeyPair(resp.GetCertPem(), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("agent: enrollment answer: certificate does not match the key: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("agent: enrollment answer: certificate: %w", err)
	}
	// The CA before the certificate: the certificate's presence is what
	// marks the state dir as enrolled.
	if err := writeFileAtomic(a.path(CAFile), resp.GetCaPem(), 0o600); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := writeFileAtomic(a.path(CertFile), resp.GetCertPem(), 0o600); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.log.Info("enrolled", "manager", a.cfg.Manager, "serial", pair.Leaf.SerialNumber.Text(16), "expires", pair.Leaf.NotAfter)
	return &creds{cert: pair, ca: ca}, nil
}

// loadOrCreateKey reuses a key left by an enrollment that did not finish,
// else makes one, written before it is used.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, []byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		block, _ := pem.Decode(b)
		if block != nil {
			if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
				if ek, ok := k.(*ecdsa.PrivateKey); ok {
					return ek, b, nil
				}
			}
		}
		return nil, nil, fmt.Errorf("%s holds no usable key; remove it to make a new one", path)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(path, keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	return key, keyPEM, nil
}

// dial returns a connection to the manager with mutual TLS. It connects
// lazily and reconnects by itself; the agent's own backoff paces the RPCs.
func (a *Agent) dial(c *creds) (*grpc.ClientConn, error) {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca)
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{c.cert},
		RootCAs:      pool,
		ServerName:   a.serverName(),
		MinVersion:   tls.VersionTLS12,
	}
	conn, err := grpc.NewClient(a.cfg.Manager,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxDesiredStateBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// The connection's own reconnection pace is the agent's, not gRPC's
		// default that grows to two minutes: a manager back from an outage
		// hears from every agent within BackoffMax.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: a.cfg.BackoffMin, Multiplier: 2, Jitter: 0.2, MaxDelay: a.cfg.BackoffMax},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("agent: manager %s: %w", a.cfg.Manager, err)
	}
	return conn, nil
}

// writeFileAtomic replaces path with data so that a crash leaves the old
// file or the new one, never a part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
