package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/pki"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/store"
)

// testCP is a control plane serving on loopback over a real SQLite file.
type testCP struct {
	cp   *ControlPlane
	st   *store.SQLite
	ca   *pki.CA
	addr string
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startCP(t *testing.T, mod func(*Config)) *testCP {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "bulkhead.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, CA: ca, Log: quietLog(), Heartbeat: 50 * time.Millisecond, Poll: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	cp, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Serve(ctx, ln, cert) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testCP{cp: cp, st: st, ca: ca, addr: ln.Addr().String()}
}

func (tc *testCP) token(t *testing.T, host string, ttl time.Duration) string {
	t.Helper()
	secret, _, err := tc.cp.CreateBootstrapToken(context.Background(), host, "test", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// client dials the control plane trusting its CA, with certs as the client
// certificate (none for enrollment).
func (tc *testCP) client(t *testing.T, certs ...tls.Certificate) agentapi.AgentClient {
	t.Helper()
	return dialTLS(t, tc.addr, &tls.Config{RootCAs: tc.ca.Pool(), Certificates: certs})
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) agentapi.AgentClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentapi.NewAgentClient(conn)
}

func newCSR(t *testing.T, cn string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

func keyPair(t *testing.T, certPEM []byte, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// enroll enrolls host with a fresh token and returns its client certificate.
func (tc *testCP) enroll(t *testing.T, host string) tls.Certificate {
	t.Helper()
	csr, key := newCSR(t, host)
	resp, err := tc.client(t).Enroll(context.Background(), &agentapi.EnrollRequest{BootstrapToken: tc.token(t, "", time.Hour), HostName: host, CsrPem: csr})
	if err != nil {
		t.Fatalf("enroll %s: %v", host, err)
	}
	return keyPair(t, resp.CertPem, key)
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	s := status.Convert(err)
	if err == nil || s.Code() != code || !strings.Contains(s.Message(), text) {
		t.Errorf("%s: %v; want %s saying %q", what, err, code, text)
	}
}

func TestEnroll(t *testing.T) {
	tc := startCP(t, nil)
	ctx := context.Background()
	c := tc.client(t)

	csr, key := newCSR(t, "evil-name")
	tok := tc.token(t, "", time.Hour)
	resp, err := c.Enroll(ctx, &agentapi.EnrollRequest{BootstrapToken: tok, HostName: "host-a", CsrPem: csr})
	if err != nil {
		t.Fatal(err)
	}
	pair := keyPair(t, resp.CertPem, key)
	if cn := pair.Leaf.Subject.CommonName; cn != "host-a" {
		t.Errorf("certificate CN %q, want the requested host name, not the CSR's", cn)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: tc.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify as a client certificate: %v", err)
	}
	if string(resp.CaPem) != string(tc.ca.CertPEM()) {
		t.Error("enrollment answer does not carry the CA")
	}
	h, err := tc.st.Host(ctx, "host-a")
	if err != nil || h.CertFingerprint != Fingerprint(pair.Leaf) {
		t.Errorf("registered host %+v, %v; want fingerprint %s", h, err, Fingerprint(pair.Leaf))
	}
	audit, _ := tc.st.AuditLog(ctx, store.AuditFilter{Action: "host.enroll"})
	if len(audit) != 1 || audit[0].Object != "Host/host-a" || audit[0].Actor != "agent:host-a" {
		t.Errorf("audit: %+v", audit)
	}

	expired := tc.token(t, "", time.Millisecond)
	forB := tc.token(t, "host-b", time.Hour)
	time.Sleep(5 * time.Millisecond)
	good := func() []byte { csr, _ := newCSR(t, "x"); return csr }
	tests := []struct {
		name  string
		token string
		host  string
		csr   []byte
		code  codes.Code
		text  string
	}{
		{"wrong token", "bhb_" + strings.Repeat("x", 43), "host-c", good(), codes.Unauthenticated, "bootstrap token not recognised"},
		{"garbage token", "hello", "host-c", good(), codes.Unauthenticated, "bootstrap token not recognised"},
		{"no token", "", "host-c", good(), codes.Unauthenticated, "bootstrap token is required"},
		{"reused token", tok, "host-c", good(), codes.Unauthenticated, "bootstrap token already used"},
		{"expired token", expired, "host-c", good(), codes.Unauthenticated, "bootstrap token expired"},
		{"token of another host", forB, "host-c", good(), codes.PermissionDenied, "issued for another host"},
		{"bad host name", forB, "Host_B", good(), codes.InvalidArgument, "host name"},
		{"bad CSR", forB, "host-b", []byte("not a csr"), codes.InvalidArgument, "no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Enroll(ctx, &agentapi.EnrollRequest{BootstrapToken: tt.token, HostName: tt.host, CsrPem: tt.csr})
			wantStatus(t, "enroll", err, tt.code, tt.text)
		})
	}
	// None of the refusals spent host-b's token.
	if _, err := c.Enroll(ctx, &agentapi.EnrollRequest{BootstrapToken: forB, HostName: "host-b", CsrPem: good()}); err != nil {
		t.Errorf("host-b with its own token after refusals: %v", err)
	}
	if hosts, _ := tc.st.Hosts(ctx); len(hosts) != 2 {
		t.Errorf("%d hosts registered, want 2 (host-a, host-b)", len(hosts))
	}
}

func TestRPCNeedsEnrolledCert(t *testing.T) {
	tc := startCP(t, nil)
	ctx := context.Background()
	cert := tc.enroll(t, "host-a")
	report := func(c agentapi.AgentClient) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.ReportWorkloads(rctx, &agentapi.WorkloadReport{})
		return err
	}
	if err := report(tc.client(t, cert)); err != nil {
		t.Fatalf("enrolled host: %v", err)
	}

	wantStatus(t, "no client certificate", report(tc.client(t)), codes.Unauthenticated, "needs a client certificate")

	other, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM, foreignKey, err := other.IssueClient("host-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(foreignPEM, foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	// A Go client does not even offer a certificate the server's CA list
	// does not name, so the call goes out without one...
	wantStatus(t, "certificate from another CA", report(tc.client(t, foreign)), codes.Unauthenticated, "needs a client certificate")
	// ...and a client that insists on sending it fails the handshake.
	insist := dialTLS(t, tc.addr, &tls.Config{RootCAs: tc.ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &foreign, nil
	}})
	// (With TLS 1.3 the client may see the refusal as a reset, not an alert.)
	if err := report(insist); status.Code(err) != codes.Unavailable {
		t.Errorf("certificate from another CA, sent anyway: %v, want the handshake refused (Unavailable)", err)
	}

	plain, err := grpc.NewClient(tc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := report(agentapi.NewAgentClient(plain)); err == nil {
		t.Error("plain-text client: call succeeded")
	}
	if _, err := agentapi.NewAgentClient(plain).Enroll(ctx, &agentapi.EnrollRequest{}); err == nil {
		t.Error("plain-text client: Enroll succeeded")
	}

	ghostPEM, ghostKey, err := tc.ca.IssueClient("ghost", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ghost, _ := tls.X509KeyPair(ghostPEM, ghostKey)
	wantStatus(t, "CA certificate of a host never enrolled", report(tc.client(t, ghost)), codes.PermissionDenied, `host "ghost" is not enrolled`)

	// A Watch stream open when the host is revoked ends, and nothing
	// more is accepted from the host.
	stream, err := tc.client(t, cert).Watch(ctx, &agentapi.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first watch event: %v", err)
	}
	if err := tc.cp.Revoke(ctx, "host-a", "test"); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err != nil {
			wantStatus(t, "watch of a revoked host", err, codes.PermissionDenied, "revoked")
			break
		}
	}
	wantStatus(t, "revoked host", report(tc.client(t, cert)), codes.PermissionDenied, "was revoked")

	// Enrolling again gives a new certificate; the old one is refused.
	fresh := tc.enroll(t, "host-a")
	if err := report(tc.client(t, fresh)); err != nil {
		t.Errorf("re-enrolled host: %v", err)
	}
	wantStatus(t, "certificate replaced by a new enrollment", report(tc.client(t, cert)), codes.PermissionDenied, "not the current certificate")
}

func workload(name, host, iface string, ips []string, tags map[string]string) *policy.Workload {
	return &policy.Workload{
		Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name}},
		Spec:   policy.WorkloadSpec{IPs: ips, Host: host, Interface: iface, Tags: tags},
	}
}

func TestWorkloadReports(t *testing.T) {
	tc := startCP(t, nil)
	ctx := context.Background()
	// An operator declared web-1 with its tags; the agent will find it.
	if _, err := tc.st.Commit(ctx, store.Commit{UpsertWorkloads: []*policy.Workload{
		workload("web-1", "", "", []string{"10.1.0.1"}, map[string]string{"app": "shop"}),
	}}); err != nil {
		t.Fatal(err)
	}
	c := tc.client(t, tc.enroll(t, "h1"))
	veth := agentapi.InterfaceKind_INTERFACE_KIND_VETH
	report := func(ifaces ...*agentapi.Interface) *agentapi.ReportWorkloadsResponse {
		t.Helper()
		resp, err := c.ReportWorkloads(ctx, &agentapi.WorkloadReport{Interfaces: ifaces})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	inventory := func() map[string]*policy.Workload {
		t.Helper()
		wls, err := tc.st.Workloads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*policy.Workload{}
		for _, w := range wls {
			out[w.Metadata.Name] = w
		}
		return out
	}

	resp := report(
		&agentapi.Interface{Name: "bhw1", Ips: []string{"10.1.0.1", "fd00::1"}, Mac: "02:00:00:00:00:01", Kind: veth},
		&agentapi.Interface{Name: "bhw2", Ips: []string{"10.1.0.2"}, Kind: veth},
		&agentapi.Interface{Name: "bhw_X@3", Ips: []string{"10.1.0.3"}, Kind: agentapi.InterfaceKind_INTERFACE_KIND_TAP},
		&agentapi.Interface{Name: "bhw4"}, // no address yet: not a workload
	)
	if !slices.Equal(resp.Created, []string{"h1-bhw2", "h1-bhw-x-3"}) || !slices.Equal(resp.Updated, []string{"web-1"}) {
		t.Errorf("first report: created %v, updated %v", resp.Created, resp.Updated)
	}
	// The agent learns every interface's workload name, for its flow
	// records; bhw4 has none yet.
	if want := map[string]string{"bhw1": "web-1", "bhw2": "h1-bhw2", "bhw_X@3": "h1-bhw-x-3"}; !maps.Equal(resp.Workloads, want) {
		t.Errorf("first report: workloads %v, want %v", resp.Workloads, want)
	}
	inv := inventory()
	if w := inv["web-1"]; w == nil || w.Spec.Host != "h1" || w.Spec.Interface != "bhw1" || w.Spec.Tags["app"] != "shop" ||
		!slices.Equal(w.Spec.IPs, []string{"10.1.0.1", "fd00::1"}) || w.Spec.Facts[FactMAC] != "02:00:00:00:00:01" || w.Spec.Facts[FactSource] != "" {
		t.Errorf("declared workload after the report: %+v", w)
	}
	if w := inv["h1-bhw-x-3"]; w == nil || w.Spec.Interface != "bhw_X@3" || w.Spec.Facts[FactIfaceKind] != "tap" || w.Spec.Facts[FactSource] != SourceAgent {
		t.Errorf("discovered workload: %+v", w)
	}
	if len(inv) != 3 {
		t.Errorf("inventory has %d workloads, want 3", len(inv))
	}

	// The same report again changes nothing.
	resp = report(
		&agentapi.Interface{Name: "bhw1", Ips: []string{"10.1.0.1", "fd00::1"}, Mac: "02:00:00:00:00:01", Kind: veth},
		&agentapi.Interface{Name: "bhw2", Ips: []string{"10.1.0.2"}, Kind: veth},
		&agentapi.Interface{Name: "bhw_X@3", Ips: []string{"10.1.0.3"}, Kind: agentapi.InterfaceKind_INTERFACE_KIND_TAP},
	)
	if len(resp.Created)+len(resp.Updated)+len(resp.Deleted) != 0 {
		t.Errorf("repeated report changed %+v", resp)
	}
	if len(resp.Workloads) != 3 || resp.Workloads["bhw1"] != "web-1" {
		t.Errorf("repeated report: workloads %v, want all three, unchanged or not", resp.Workloads)
	}

	// bhw2's address changes, bhw_X@3 and bhw1 go away.
	resp = report(&agentapi.Interface{Name: "bhw2", Ips: []string{"10.1.0.22"}, Kind: veth})
	if !slices.Equal(resp.Updated, []string{"h1-bhw2", "web-1"}) || !slices.Equal(resp.Deleted, []string{"h1-bhw-x-3"}) {
		t.Errorf("third report: updated %v, deleted %v", resp.Updated, resp.Deleted)
	}
	inv = inventory()
	if w := inv["h1-bhw2"]; w == nil || !slices.Equal(w.Spec.IPs, []string{"10.1.0.22"}) {
		t.Errorf("moved address: %+v", w)
	}
	if w := inv["web-1"]; w == nil || w.Spec.Host != "" || w.Spec.Interface != "" || w.Spec.Tags["app"] != "shop" || w.Spec.Facts != nil {
		t.Errorf("declared workload whose interface left: %+v (want detached, tags kept)", w)
	}
	if _, ok := inv["h1-bhw-x-3"]; ok {
		t.Error("discovered workload whose interface left is still there")
	}

	// Another host reporting web-1's address takes it over.
	c2 := tc.client(t, tc.enroll(t, "h2"))
	if _, err := c2.ReportWorkloads(ctx, &agentapi.WorkloadReport{Interfaces: []*agentapi.Interface{{Name: "tap0", Ips: []string{"10.1.0.1"}}}}); err != nil {
		t.Fatal(err)
	}
	if w := inventory()["web-1"]; w.Spec.Host != "h2" || w.Spec.Interface != "tap0" {
		t.Errorf("web-1 after h2's report: %+v", w)
	}

	audit, err := tc.st.AuditLog(ctx, store.AuditFilter{Action: "discover"})
	if err != nil {
		t.Fatal(err)
	}
	var objs []string
	for _, e := range audit {
		objs = append(objs, e.Actor+" "+e.Object)
	}
	for _, want := range []string{"agent:h1 Workload/h1-bhw2", "agent:h1 Workload/h1-bhw-x-3", "agent:h2 Workload/web-1"} {
		if !slices.Contains(objs, want) {
			t.Errorf("audit log lacks %q: %v", want, objs)
		}
	}

	hosts, _, err := tc.cp.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].Workloads != 1 || hosts[1].Workloads != 1 {
		t.Errorf("hosts: %+v, %v", hosts, err)
	}
}

func TestWorkloadName(t *testing.T) {
	tests := []struct{ host, iface, want string }{
		{"h1", "bhw1", "h1-bhw1"},
		{"h1", "Tap_0", "h1-tap-0"},
		{"h1", "veth@if3", "h1-veth-if3"},
		{"h1", "__", "h1-if"},
		{"h1", "a.b", "h1-a.b"},
	}
	for _, tt := range tests {
		if got := workloadName(tt.host, tt.iface); got != tt.want {
			t.Errorf("workloadName(%q, %q) = %q, want %q", tt.host, tt.iface, got, tt.want)
		}
	}
	taken := map[string]bool{"h1-bhw1": true, "h1-bhw1-2": true}
	if got := uniqueName("h1-bhw1", taken); got != "h1-bhw1-3" {
		t.Errorf("uniqueName = %q", got)
	}
}

// publish commits a new revision, as the manager does on apply.
func publish(t *testing.T, tc *testCP) int64 {
	t.Helper()
	ctx := context.Background()
	latest, err := tc.st.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := tc.st.Commit(ctx, store.Commit{Base: latest.Number, Author: "test", Set: policy.NewSet()})
	if err != nil {
		t.Fatal(err)
	}
	tc.cp.Changed()
	return n
}

func recvDesired(t *testing.T, stream grpc.ServerStreamingClient[agentapi.WatchEvent]) *agentapi.DesiredState {
	t.Helper()
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if d := ev.GetDesired(); d != nil {
			return d
		}
	}
}

// heartbeats reads n heartbeats and fails if a desired state comes first.
func heartbeats(t *testing.T, stream grpc.ServerStreamingClient[agentapi.WatchEvent], n int) {
	t.Helper()
	for n > 0 {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if d := ev.GetDesired(); d != nil {
			t.Fatalf("unexpected desired state at revision %d", d.Revision)
		}
		n--
	}
}

func TestWatchSendsChangedStates(t *testing.T) {
	// A span whose payload changes only on even revisions.
	var tc *testCP
	tc = startCP(t, func(c *Config) {
		c.Span = func(ctx context.Context, host string) (int64, string, []byte, error) {
			latest, err := c.Store.Latest(ctx)
			if err != nil {
				return 0, "", nil, err
			}
			return latest.Number, "test/v1", fmt.Appendf(nil, "%s at %d", host, latest.Number/2*2), nil
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := tc.client(t, tc.enroll(t, "h1"))
	stream, err := c.Watch(ctx, &agentapi.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d := recvDesired(t, stream)
	if d.Revision != 0 || string(d.DesiredState) != "h1 at 0" || d.Format != "test/v1" || string(d.Digest) != string(agentapi.Digest(d.Format, d.DesiredState)) {
		t.Fatalf("first desired state: %+v", d)
	}
	if publish(t, tc) != 1 {
		t.Fatal("revision numbering")
	}
	heartbeats(t, stream, 3) // revision 1: same payload, nothing sent
	publish(t, tc)
	if d = recvDesired(t, stream); d.Revision != 2 || string(d.DesiredState) != "h1 at 2" {
		t.Fatalf("after revision 2: %+v", d)
	}

	hosts, published, err := tc.cp.Hosts(ctx)
	if err != nil || len(hosts) != 1 || published != 2 {
		t.Fatalf("hosts %+v, published %d, %v", hosts, published, err)
	}
	if h := hosts[0]; !h.Connected || h.InSync || h.DesiredRevision != 2 || h.RealizedRevision != 0 {
		t.Errorf("before the ack: %+v", h)
	}
	if _, err := c.Ack(ctx, &agentapi.AckRequest{RealizedRevision: 2, RealizedDigest: d.Digest}); err != nil {
		t.Fatal(err)
	}
	hosts, _, _ = tc.cp.Hosts(ctx)
	if h := hosts[0]; !h.InSync || h.RealizedRevision != 2 || h.LastError != "" {
		t.Errorf("after the ack: %+v", h)
	}
	if _, err := c.Ack(ctx, &agentapi.AckRequest{RealizedRevision: 2, RealizedDigest: d.Digest, Error: "nft: boom", FailedRevision: 3}); err != nil {
		t.Fatal(err)
	}
	hosts, _, _ = tc.cp.Hosts(ctx)
	if h := hosts[0]; h.InSync || h.LastError != "nft: boom" {
		t.Errorf("after a failed apply: %+v", h)
	}
	if st, _ := tc.st.Host(ctx, "h1"); st.RealizedRevision != 2 || st.LastError != "nft: boom" {
		t.Errorf("stored status: %+v", st)
	}

	// A new stream that already holds the state gets no copy of it; the
	// old stream is ended.
	stream2, err := c.Watch(ctx, &agentapi.WatchRequest{Realized: &agentapi.AckRequest{RealizedRevision: 2, RealizedDigest: d.Digest}})
	if err != nil {
		t.Fatal(err)
	}
	heartbeats(t, stream2, 2)
	for {
		if _, err := stream.Recv(); err != nil {
			wantStatus(t, "replaced stream", err, codes.Unavailable, "replaced")
			break
		}
	}
	hosts, _, _ = tc.cp.Hosts(ctx)
	if h := hosts[0]; !h.Connected || !h.InSync || h.DesiredRevision != 2 {
		t.Errorf("after reconnecting in sync: %+v", h)
	}

	cancel()
	waitFor(t, "host disconnected", func() bool {
		hosts, _, _ := tc.cp.Hosts(context.Background())
		return len(hosts) == 1 && !hosts[0].Connected && !hosts[0].LastSeen.IsZero()
	})
}

func TestSendFlows(t *testing.T) {
	type call struct {
		host string
		recs []flow.Record
	}
	got := make(chan call, 10)
	var fail atomic.Bool
	tc := startCP(t, func(c *Config) {
		c.Flows = func(ctx context.Context, host string, recs []flow.Record) error {
			if fail.Load() {
				return errors.New("disk full")
			}
			got <- call{host, recs}
			return nil
		}
	})
	c := tc.client(t, tc.enroll(t, "h1"))
	ctx := context.Background()
	start := time.Now()
	sent := flow.Record{ID: "h1/1/2a", Kind: flow.KindUpdate, Host: "spoofed",
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 6, SrcPort: 40000, DstPort: 443,
		SrcWorkload: "web", SrcBytes: 10, SrcPackets: 1, Start: start, Seen: start, RuleID: 100, Verdict: flow.Allow}
	bad := agentapi.NewFlowRecord(&sent)
	bad.SrcIp = []byte{1, 2, 3}
	batch := agentapi.NewFlowBatch([]flow.Record{sent}, 7)
	batch.Records = append(batch.Records, bad)

	// The store fails: the agent is told to retry, and nothing is counted.
	fail.Store(true)
	if _, err := c.SendFlows(ctx, batch); status.Code(err) != codes.Unavailable {
		t.Errorf("SendFlows with a failing store: %v, want Unavailable", err)
	}
	if n, dropped, _ := tc.cp.FlowCounts(); n != 0 || dropped != 0 {
		t.Errorf("flow counts after a failure: %d, %d", n, dropped)
	}
	fail.Store(false)

	resp, err := c.SendFlows(ctx, batch)
	if err != nil || resp.Accepted != 1 {
		t.Fatalf("SendFlows: %v, %v", resp, err)
	}
	cl := <-got
	// The host is the certificate's, whatever the record said; the
	// malformed record is left out, not the batch.
	want := sent
	want.Host = "h1"
	if cl.host != "h1" || len(cl.recs) != 1 || cl.recs[0].Host != "h1" || cl.recs[0].ID != want.ID ||
		cl.recs[0].SrcWorkload != "web" || !cl.recs[0].Start.Equal(start) || cl.recs[0].RuleID != 100 {
		t.Errorf("sink got %s %+v, want h1 %+v", cl.host, cl.recs, want)
	}
	if n, dropped, malformed := tc.cp.FlowCounts(); n != 1 || dropped != 7 || malformed != 2 {
		t.Errorf("flow counts %d, %d, %d; want 1 stored, 7 dropped, 2 malformed (one per attempt)", n, dropped, malformed)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSpanErrorShows(t *testing.T) {
	tc := startCP(t, func(c *Config) {
		c.Span = func(ctx context.Context, host string) (int64, string, []byte, error) {
			return 0, "", nil, errors.New("compile: group web: cycle")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := tc.client(t, tc.enroll(t, "h1")).Watch(ctx, &agentapi.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	heartbeats(t, stream, 1)
	hosts, _, err := tc.cp.Hosts(ctx)
	if err != nil || len(hosts) != 1 || hosts[0].InSync || hosts[0].LastError != "manager: compute desired state: compile: group web: cycle" {
		t.Errorf("hosts: %+v, %v", hosts, err)
	}
	tc.cp.SetSpan(nil) // back to the empty state: now it computes
	if d := recvDesired(t, stream); d.Format != agentapi.FormatEmpty || len(d.DesiredState) != 0 {
		t.Errorf("empty desired state: %+v", d)
	}
	hosts, _, _ = tc.cp.Hosts(ctx)
	if hosts[0].LastError != "" {
		t.Errorf("error kept after the span recovered: %q", hosts[0].LastError)
	}
}
