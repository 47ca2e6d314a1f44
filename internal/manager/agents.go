package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/controlplane"
	"github.com/bulkhead/bulkhead/internal/store"
)

// The agent channel: the control plane serves gRPC on cfg.AgentListen, and
// these handlers put its registry and bootstrap tokens on the REST API.

// agentCertTTL is the lifetime of the agent listener's server certificate,
// issued in memory at each start.
const agentCertTTL = 365 * 24 * time.Hour

// defaultBootstrapTTL applies when a token request names no TTL.
const defaultBootstrapTTL = time.Hour

func (s *Server) newControlPlane() *controlplane.ControlPlane {
	cp, err := controlplane.New(controlplane.Config{
		Store: s.store, CA: s.ca, Log: s.log,
		// Reports read-modify-write the inventory, as apply does.
		InventoryLock: &s.writeMu,
		// The control plane names the host from its client certificate.
		Flows:  s.IngestFlows,
		Alerts: s.IngestAlerts, // ids_alerts.go
	})
	if err != nil {
		panic(err) // only for a nil store or CA, which newServer never passes
	}
	return cp
}

// ControlPlane returns the agent channel, to wire its hooks (SetSpan).
func (s *Server) ControlPlane() *controlplane.ControlPlane { return s.agents }

// AgentAddr is the address the agent listener is bound to, or "" when it
// is not serving.
func (s *Server) AgentAddr() string {
	if a := s.agentAddr.Load(); a != nil {
		return *a
	}
	return ""
}

// startAgents binds cfg.AgentListen and serves the agent channel until ctx
// is done; the returned channel yields its end. Nothing is started when
// AgentListen is empty.
func (s *Server) startAgents(ctx context.Context) (<-chan error, error) {
	done := make(chan error, 1)
	if s.cfg.AgentListen == "" {
		return done, nil
	}
	ln, err := net.Listen("tcp", s.cfg.AgentListen)
	if err != nil {
		return nil, fmt.Errorf("manager: agent listener %s: %w", s.cfg.AgentListen, err)
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, s.cfg.Hosts...)
	if h, _, err := net.SplitHostPort(ln.Addr().String()); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
		hosts = append(hosts, h)
	}
	if hn, err := os.Hostname(); err == nil {
		hosts = append(hosts, hn)
	}
	cert, err := s.ca.IssueServer(hosts, agentCertTTL)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("manager: agent listener certificate: %w", err)
	}
	addr := ln.Addr().String()
	s.agentAddr.Store(&addr)
	go func() {
		done <- s.agents.Serve(ctx, ln, cert)
		s.agentAddr.Store(nil)
	}()
	return done, nil
}

func (s *Server) handleCreateBootstrapToken(w http.ResponseWriter, r *http.Request) error {
	var req api.BootstrapTokenRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	ttl := defaultBootstrapTTL
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("ttl %q: want a positive duration like 1h", req.TTL))
		}
	}
	if req.Host != "" {
		if why := controlplane.ValidHostName(req.Host); why != "" {
			return httpError(http.StatusBadRequest, errors.New(why))
		}
	}
	secret, tok, err := s.agents.CreateBootstrapToken(r.Context(), req.Host, callerOf(r.Context()).Name, ttl)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.BootstrapTokenCreated{
		ID: tok.ID, Secret: secret, Host: tok.Host, Expires: tok.Expires,
		CAFingerprint: s.ca.Fingerprint(), AgentAddress: s.agentAddressFor(r),
	})
	return nil
}

// agentAddressFor is the agent listener's address as the caller can reach
// it: a wildcard listen address becomes the host the caller used for the
// API.
func (s *Server) agentAddressFor(r *http.Request) string {
	addr := s.AgentAddr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		} else if r.Host != "" {
			host = r.Host
		}
	}
	return net.JoinHostPort(host, port)
}

func (s *Server) handleHosts(w http.ResponseWriter, r *http.Request) error {
	hosts, published, err := s.agents.Hosts(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Host, len(hosts))
	for i, h := range hosts {
		out[i] = api.Host{
			Name: h.Name, Connected: h.Connected, InSync: h.InSync, Enrolled: h.Enrolled,
			RealizedRevision: h.RealizedRevision, DesiredRevision: h.DesiredRevision, PublishedRevision: published,
			Workloads: h.Workloads, LastError: h.LastError, CertFingerprint: h.CertFingerprint,
		}
		if !h.LastSeen.IsZero() {
			t := h.LastSeen
			out[i].LastSeen = &t
		}
		if !h.Revoked.IsZero() {
			t := h.Revoked
			out[i].Revoked = &t
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleRevokeHost(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.agents.Revoke(r.Context(), name, callerOf(r.Context()).Name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpError(http.StatusNotFound, fmt.Errorf("host %q not found", name))
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
