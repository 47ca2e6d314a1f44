package cli

import (
	"errors"
	"log/slog"

	"github.com/bulkhead/bulkhead/internal/agent"
)

// newAgentEnforcer returns the data plane that 'bulkhead agent' drives.
// The nftables engine plugs in here, for cfg.NetNS; until it does, only
// --dry-run runs.
func newAgentEnforcer(cfg agent.Config, dryRun bool, log *slog.Logger) (agent.Enforcer, error) {
	if dryRun {
		log.Warn("dry run: desired states are logged and acknowledged, not enforced")
		return agent.NewDryRun(log), nil
	}
	return nil, errors.New("agent: this build has no data plane wired to the agent; pass --dry-run to follow the manager without enforcing")
}
