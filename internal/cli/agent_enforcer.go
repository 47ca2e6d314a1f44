package cli

import (
	"log/slog"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/enforce"
	"github.com/bulkhead/bulkhead/internal/l7"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// newAgentEnforcer returns the data plane that 'bulkhead agent' drives: the
// nftables table of cfg.NetNS (drops to NFLOG group nc.LogGroup, where the
// agent's drop reader listens; payload packets of connections an L7 rule
// decides to queue nc.L7Queue, read while the state has L7 rules and logged
// to log), or a logger of desired states with --dry-run.
func newAgentEnforcer(cfg agent.Config, nc nft.Config, dryRun bool, log *slog.Logger) (agent.Enforcer, error) {
	if dryRun {
		log.Warn("dry run: desired states are logged and acknowledged, not enforced")
		return agent.NewDryRun(log), nil
	}
	return enforce.New(cfg.NetNS, nc, enforce.WithL7(l7.Config{}, log.With("component", "l7")))
}
