package cli

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/dnssnoop"
	"github.com/bulkhead/bulkhead/internal/enforce"
	"github.com/bulkhead/bulkhead/internal/idsagent"
	"github.com/bulkhead/bulkhead/internal/l7"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// DNSGraceEnv overrides the grace the agent's DNS cache adds to every
// answer's TTL before an FQDN rule forgets the address (dnssnoop's default,
// 30s, when unset). The lab sets a short one so that a moved name's old
// address is dropped within seconds.
const DNSGraceEnv = "BULKHEAD_AGENT_DNS_GRACE"

// newAgentEnforcer returns the data plane that 'bulkhead agent' drives: the
// nftables table of cfg.NetNS (drops to NFLOG group nc.LogGroup, where the
// agent's drop reader listens; payload packets of connections an L7 rule
// decides to queue nc.L7Queue, read while the state has L7 rules and logged
// to log; DNS answers snooped while it has FQDN rules; packets of IDS
// workloads inspected while it has IDS profiles, alerts to ids.Sink), or a
// logger of desired states with --dry-run.
func newAgentEnforcer(cfg agent.Config, nc nft.Config, ids idsagent.Config, dryRun bool, log *slog.Logger) (agent.Enforcer, error) {
	if dryRun {
		log.Warn("dry run: desired states are logged and acknowledged, not enforced")
		return agent.NewDryRun(log), nil
	}
	opts := []enforce.Option{
		enforce.WithL7(l7.Config{}, log.With("component", "l7")),
		enforce.WithIDS(ids, log.With("component", "ids")),
	}
	if v := os.Getenv(DNSGraceEnv); v != "" {
		grace, err := parseDNSGrace(v)
		if err != nil {
			return nil, err
		}
		log.Info("DNS cache grace set", "grace", grace, "from", DNSGraceEnv)
		opts = append(opts, enforce.WithDNSCache(dnssnoop.CacheConfig{Grace: grace}))
	}
	return enforce.New(cfg.NetNS, nc, opts...)
}

// parseDNSGrace reads the value of DNSGraceEnv: a positive duration (the
// cache treats 0 as "the default").
func parseDNSGrace(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", DNSGraceEnv, v, err)
	}
	if d <= 0 || d > time.Hour {
		return 0, fmt.Errorf("%s=%q: want a duration from 1ns to 1h, e.g. 3s", DNSGraceEnv, v)
	}
	return d, nil
}

// alertSink passes IDS alerts to the agent once it exists (the enforcer,
// and so the IDS reader, is made first); until then they are logged and
// dropped.
type alertSink struct {
	log  *slog.Logger
	mu   sync.RWMutex
	to   func(eve []byte)
	lost atomic.Uint64
}

func (s *alertSink) set(to func(eve []byte)) {
	s.mu.Lock()
	s.to = to
	s.mu.Unlock()
}

func (s *alertSink) send(eve []byte) {
	s.mu.RLock()
	to := s.to
	s.mu.RUnlock()
	if to == nil {
		if n := s.lost.Add(1); n&(n-1) == 0 {
			s.log.Warn("IDS alert before the agent started: dropped", "dropped", n, "eve", string(eve))
		}
		return
	}
	to(eve)
}
