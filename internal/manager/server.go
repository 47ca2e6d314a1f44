// Package manager is the control plane process: it serves the REST API under
// /api/v1 with token auth and roles, keeps policy revisions in the store,
// compiles the evaluator for them, and exports Prometheus metrics.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/controlplane"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/pki"
	"github.com/bulkhead/bulkhead/internal/store"
)

// Config configures a manager. Zero values take the defaults of Defaults.
type Config struct {
	// DataDir holds the SQLite store, the CA and the admin token.
	DataDir string `json:"dataDir"`
	// Listen is the HTTPS address of the API and console.
	Listen string `json:"listen"`
	// AgentListen is the gRPC address of the agent channel (mutual TLS);
	// empty turns the channel off.
	AgentListen string `json:"agentListen,omitempty"`
	// Hosts are extra DNS names and IPs for the server certificate.
	Hosts []string `json:"hosts,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`
	// IPFIXListen is a UDP address where IPFIX / NetFlow v9 exporters send
	// flow records; empty turns the collector off.
	IPFIXListen string `json:"ipfixListen,omitempty"`
}

// Defaults returns the configuration used for fields left empty.
func Defaults() Config {
	return Config{DataDir: "/var/lib/bulkhead", Listen: "127.0.0.1:8443", AgentListen: "127.0.0.1:8444", LogLevel: "info"}
}

// Validate checks a configuration after defaults are applied.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("manager config: dataDir: must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("manager config: listen: %q is not host:port: %w", c.Listen, err)
	}
	if c.AgentListen != "" {
		if _, _, err := net.SplitHostPort(c.AgentListen); err != nil {
			return fmt.Errorf("manager config: agentListen: %q is not host:port: %w", c.AgentListen, err)
		}
	}
	if c.IPFIXListen != "" {
		if _, _, err := net.SplitHostPort(c.IPFIXListen); err != nil {
			return fmt.Errorf("manager config: ipfixListen: %q is not host:port: %w", c.IPFIXListen, err)
		}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("manager config: logLevel: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	return nil
}

// AdminTokenFile is where the first admin token is written, under DataDir.
const AdminTokenFile = "admin.token"

// Server is a running control plane.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	ca      *pki.CA
	routes  []route
	mux     *http.ServeMux
	metrics *metrics
	now     func() time.Time

	// writeMu serialises changes so that each is computed on the latest
	// revision; the store's optimistic check catches any other writer.
	writeMu sync.Mutex
	evals   *evalCache

	// agents is the agent channel (agents.go); agentAddr its bound address.
	agents    *controlplane.ControlPlane
	agentAddr atomic.Pointer[string]

	// flows is the flow store (flows.go), nil until openFlows.
	flows flowstore.Store
	// agentHosts caches the enrolled hosts for marking mirror flow records
	// (flows.go).
	agentHostsMu sync.Mutex
	agentHostsAt time.Time
	agentHosts   map[string]bool

	// ids holds the IDS signature sets and selection caches (ids.go).
	ids *idsState

	// idsAlerts counts the IDS alerts agents send (ids_alerts.go).
	idsAlerts *idsAlertMetrics
}

// New opens (or creates) the manager's state in cfg.DataDir: store, CA and,
// on first start, an admin token written to DataDir/admin.token.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("manager: create data dir: %w", err)
	}
	st, err := store.OpenSQLite(filepath.Join(cfg.DataDir, "bulkhead.db"))
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	ca, err := pki.LoadOrCreateCA(cfg.DataDir)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("manager: %w", err)
	}
	s := newServer(cfg, log, st, ca)
	if err := s.bootstrapAdmin(context.Background()); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.openFlows(); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

func newServer(cfg Config, log *slog.Logger, st store.Store, ca *pki.CA) *Server {
	s := &Server{cfg: cfg, log: log, store: st, ca: ca, now: time.Now, metrics: newMetrics()}
	s.evals = newEvalCache(st)
	s.ids = newIDSState()
	s.agents = s.newControlPlane()
	s.agents.SetSpan(s.hostSpan)
	s.registerIDSAlertMetrics()
	s.routes = s.buildRoutes()
	s.mux = s.newMux()
	return s
}

// bootstrapAdmin creates the first admin token when there is none, so a new
// manager is never open and never unusable.
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	toks, err := s.store.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("manager: list tokens: %w", err)
	}
	path := filepath.Join(s.cfg.DataDir, AdminTokenFile)
	for _, t := range toks {
		if t.Role == api.RoleAdmin {
			if _, err := os.Stat(path); err == nil {
				s.log.Info("admin token", "file", path)
			}
			return nil
		}
	}
	secret, _, err := s.store.CreateToken(ctx, "admin", api.RoleAdmin, 0)
	if err != nil {
		return fmt.Errorf("manager: create admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("manager: write admin token: %w", err)
	}
	s.log.Info("created the first admin token", "file", path)
	return nil
}

// Handler serves the API, metrics and health check.
func (s *Server) Handler() http.Handler { return s.mux }

// Close releases the stores.
func (s *Server) Close() error { return errors.Join(s.closeFlows(), s.store.Close()) }

// CA returns the manager's certificate authority.
func (s *Server) CA() *pki.CA { return s.ca }

// Run serves HTTPS on cfg.Listen until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("manager: listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTPS on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, s.cfg.Hosts...)
	if h, _, err := net.SplitHostPort(ln.Addr().String()); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
		hosts = append(hosts, h)
	}
	if hn, err := os.Hostname(); err == nil {
		hosts = append(hosts, hn)
	}
	cert, err := pki.LoadOrCreateServerCert(s.cfg.DataDir, s.ca, hosts)
	if err != nil {
		return fmt.Errorf("manager: server certificate: %w", err)
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	agentCtx, stopAgents := context.WithCancel(ctx)
	// Background goroutines of this Serve (IPFIX collector, inventory
	// source syncs). Deferred calls run last first: stop, then wait.
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopAgents()
	agentsDone, err := s.startAgents(agentCtx)
	if err != nil {
		return err
	}
	// Background work of other capabilities stops with the agent channel.
	if err := s.startFlowCollectors(agentCtx, &bg); err != nil { // flowimport.go
		return err
	}
	s.startInventorySources(agentCtx, &bg) // inventory.go
	s.startIDS(agentCtx, &bg)              // ids.go
	s.log.Info("manager listening", "url", "https://"+ln.Addr().String(), "ca", filepath.Join(s.cfg.DataDir, "ca.crt"), "agents", s.AgentAddr())
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		if s.cfg.AgentListen != "" {
			<-agentsDone
		}
		return nil
	case err := <-agentsDone:
		if ctx.Err() != nil { // shutting down: the agent channel went first
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		}
		srv.Close()
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("manager: agent channel: %w", err)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("manager: serve: %w", err)
	}
}
