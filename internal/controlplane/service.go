package controlplane

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/store"
)

// MaxFlowBatchBytes bounds one SendFlows message (and any other message an
// agent sends).
const MaxFlowBatchBytes = 16 << 20

// ServerTLS is the TLS configuration of the agent listener: the manager's
// certificate (sent with the CA, so that an agent pinning the CA by
// fingerprint finds it in the chain), and client certificates verified
// against the CA when given. They are optional at this layer because Enroll
// is called without one; every other RPC is refused without one.
func (cp *ControlPlane) ServerTLS(cert tls.Certificate) *tls.Config {
	caDER := cp.cfg.CA.Certificate().Raw
	chain := append([][]byte(nil), cert.Certificate...)
	if len(chain) < 2 {
		chain = append(chain, caDER)
	}
	cert.Certificate = chain
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    cp.cfg.CA.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// NewGRPCServer returns a gRPC server for the agent service with TLS from
// ServerTLS(cert) and the per-RPC host check.
func (cp *ControlPlane) NewGRPCServer(cert tls.Certificate) *grpc.Server {
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(cp.ServerTLS(cert))),
		grpc.UnaryInterceptor(cp.unaryAuth),
		grpc.StreamInterceptor(cp.streamAuth),
		grpc.MaxRecvMsgSize(MaxFlowBatchBytes),
		// Find agents that vanished without closing their stream.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	agentapi.RegisterAgentServer(srv, &service{cp: cp})
	return srv
}

// Serve serves the agent channel on ln with the server certificate cert
// until ctx is done, and recomputes desired states as revisions and the
// inventory change.
func (cp *ControlPlane) Serve(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
	srv := cp.NewGRPCServer(cert)
	pctx, stopPublish := context.WithCancel(ctx)
	published := make(chan struct{})
	go func() { cp.publish(pctx); close(published) }()
	defer func() { stopPublish(); <-published }()

	cp.log.Info("agent channel listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		cp.disconnectAll(errStopping)
		srv.Stop()
		if err != nil {
			return fmt.Errorf("controlplane: serve %s: %w", ln.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	// Watch streams never end by themselves: end them, then let unary
	// calls in flight finish for a moment.
	cp.disconnectAll(errStopping)
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		srv.Stop()
	}
	<-errc
	return nil
}

type hostKey struct{}

// hostOf returns the host name the per-RPC check found in the client
// certificate.
func hostOf(ctx context.Context) string {
	h, _ := ctx.Value(hostKey{}).(string)
	return h
}

// Fingerprint is the SHA-256 of a certificate's DER, hex encoded.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// authorize lets Enroll through and, for every other method, requires a
// verified client certificate that is the current certificate of an
// enrolled, non-revoked host.
func (cp *ControlPlane) authorize(ctx context.Context, method string) (context.Context, error) {
	if method == agentapi.Agent_Enroll_FullMethodName {
		return ctx, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "TLS required")
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return nil, status.Errorf(codes.Unauthenticated, "%s needs a client certificate from the manager's CA: enroll the host first", method)
	}
	leaf := chains[0][0]
	name := leaf.Subject.CommonName
	h, err := cp.cfg.Store.Host(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.PermissionDenied, "host %q is not enrolled", name)
	}
	if err != nil {
		cp.log.Error("look up host", "host", name, "err", err)
		return nil, status.Error(codes.Internal, "cannot look up the host")
	}
	if !h.Revoked.IsZero() {
		return nil, status.Errorf(codes.PermissionDenied, "host %q was revoked at %s: enroll it again with a new bootstrap token", name, h.Revoked.Format(time.RFC3339))
	}
	if fp := Fingerprint(leaf); fp != h.CertFingerprint {
		return nil, status.Errorf(codes.PermissionDenied, "certificate %s is not the current certificate of host %q (it enrolled again at %s)", fp[:16], name, h.Enrolled.Format(time.RFC3339))
	}
	cp.touch(name)
	return context.WithValue(ctx, hostKey{}, name), nil
}

func (cp *ControlPlane) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := cp.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

func (cp *ControlPlane) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := cp.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

// service implements agentapi.AgentServer on top of the control plane.
type service struct {
	agentapi.UnimplementedAgentServer
	cp *ControlPlane
}

var _ agentapi.AgentServer = (*service)(nil)

func (s *service) Enroll(ctx context.Context, req *agentapi.EnrollRequest) (*agentapi.EnrollResponse, error) {
	return s.cp.enroll(ctx, req)
}

func (s *service) ReportWorkloads(ctx context.Context, req *agentapi.WorkloadReport) (*agentapi.ReportWorkloadsResponse, error) {
	resp, err := s.cp.reportWorkloads(ctx, hostOf(ctx), req)
	if err != nil {
		s.cp.log.Error("workload report", "host", hostOf(ctx), "err", err)
		return nil, status.Errorf(codes.Internal, "record workloads: %v", err)
	}
	return resp, nil
}

func (s *service) Watch(req *agentapi.WatchRequest, stream grpc.ServerStreamingServer[agentapi.WatchEvent]) error {
	ctx := stream.Context()
	host := hostOf(ctx)
	sess, err := s.cp.attach(ctx, host, req.GetRealized())
	if err != nil {
		s.cp.log.Error("watch", "host", host, "err", err)
		return status.Error(codes.Internal, "cannot record the host's status")
	}
	defer s.cp.detach(sess)
	s.cp.refresh(sess.ctx, sess)

	hb := time.NewTicker(s.cp.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-sess.ctx.Done():
			cause := context.Cause(sess.ctx)
			switch {
			case ctx.Err() != nil:
				return status.FromContextError(ctx.Err()).Err()
			case errors.Is(cause, errRevoked):
				return status.Errorf(codes.PermissionDenied, "host %q: %v", host, cause)
			default:
				return status.Errorf(codes.Unavailable, "host %q: %v", host, cause)
			}
		case ds := <-sess.mailbox:
			if err := stream.Send(&agentapi.WatchEvent{Event: &agentapi.WatchEvent_Desired{Desired: ds}}); err != nil {
				return err
			}
			s.cp.log.Info("desired state sent", "host", host, "revision", ds.Revision, "format", ds.Format, "bytes", len(ds.DesiredState))
		case <-hb.C:
			beat := &agentapi.Heartbeat{UnixNanos: s.cp.cfg.Now().UnixNano(), PublishedRevision: s.cp.published.Load()}
			if err := stream.Send(&agentapi.WatchEvent{Event: &agentapi.WatchEvent_Heartbeat{Heartbeat: beat}}); err != nil {
				return err
			}
		}
	}
}

func (s *service) Ack(ctx context.Context, req *agentapi.AckRequest) (*agentapi.AckResponse, error) {
	if err := s.cp.ack(ctx, hostOf(ctx), req); err != nil {
		s.cp.log.Error("ack", "host", hostOf(ctx), "err", err)
		return nil, status.Error(codes.Internal, "cannot record the acknowledgement")
	}
	return &agentapi.AckResponse{}, nil
}

func (s *service) SendFlows(ctx context.Context, req *agentapi.FlowBatch) (*agentapi.SendFlowsResponse, error) {
	host := hostOf(ctx)
	recs, bad, err := req.FlowRecords(host)
	if bad > 0 {
		// A record that cannot be converted never will be: storing the
		// rest and acknowledging the batch keeps the agent from resending
		// it forever. A broken agent sends them in every batch, so the
		// log says it at 1, 2, 4, ... of them.
		n := s.cp.flowMalformed.Add(uint64(bad))
		if before := n - uint64(bad); bits.Len64(n) != bits.Len64(before) {
			s.cp.log.Warn("malformed flow records skipped", "host", host, "skipped", bad, "total", n, "err", err)
		}
	}
	if err := s.cp.flows(ctx, host, recs); err != nil {
		s.cp.log.Error("store flow records", "host", host, "records", len(recs), "err", err)
		return nil, status.Error(codes.Unavailable, "cannot store flow records now; retry")
	}
	// Counted once stored: a batch the store refused counts when the
	// agent sends it again.
	s.cp.flowRecords.Add(uint64(len(recs)))
	s.cp.flowDropped.Add(req.Dropped)
	if req.Dropped > 0 {
		s.cp.log.Warn("agent dropped flow records: its buffer was full", "host", host, "dropped", req.Dropped)
	}
	return &agentapi.SendFlowsResponse{Accepted: uint32(len(recs))}, nil
}

// SendAlerts hands a batch of IDS alerts to the AlertSink in the name of
// the host whose certificate sent it.
func (s *service) SendAlerts(ctx context.Context, req *agentapi.AlertBatch) (*agentapi.SendAlertsResponse, error) {
	host := hostOf(ctx)
	accepted, err := s.cp.alerts(ctx, host, req.GetEve())
	if err != nil {
		s.cp.log.Error("store IDS alerts", "host", host, "alerts", len(req.GetEve()), "err", err)
		return nil, status.Error(codes.Unavailable, "cannot store IDS alerts now; retry")
	}
	s.cp.alertRecords.Add(uint64(accepted))
	s.cp.alertDropped.Add(req.GetDropped())
	if req.GetDropped() > 0 {
		s.cp.log.Warn("agent dropped IDS alerts: its buffer was full", "host", host, "dropped", req.GetDropped())
	}
	return &agentapi.SendAlertsResponse{Accepted: uint32(accepted)}, nil
}

// AlertCounts returns how many IDS alerts agents delivered and the sink
// accepted since start, and how many the agents said they had to drop.
func (cp *ControlPlane) AlertCounts() (accepted, dropped uint64) {
	return cp.alertRecords.Load(), cp.alertDropped.Load()
}

// FlowCounts returns how many flow records agents delivered since start,
// how many they said they had to drop, and how many were malformed and
// skipped.
func (cp *ControlPlane) FlowCounts() (records, dropped, malformed uint64) {
	return cp.flowRecords.Load(), cp.flowDropped.Load(), cp.flowMalformed.Load()
}
