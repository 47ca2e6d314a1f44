package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/agent"
)

func newAgentCmd(g *globals) *cobra.Command {
	var (
		cfg       agent.Config
		uninstall bool
		dryRun    bool
		logLevel  string
	)
	cmd := &cobra.Command{
		Use:   "agent --manager HOST:PORT --state-dir DIR [--bootstrap-token T (--ca-fingerprint SHA256 | --ca FILE)]",
		Short: "Run the host agent: enroll, report workloads, enforce this host's policy",
		Long: `Run the Bulkhead agent on a host (hypervisor). It enrolls once with a bootstrap
token from 'bulkhead token create' (its key never leaves DIR; later starts need
no token), reports the host's workload interfaces (names matching
--iface-pattern, ports of --bridge if given) to the manager, enforces the
desired state the manager streams for this host, and keeps the last one in DIR
so that a restart enforces it again at once, with or without the manager.

The bootstrap token may also come from BULKHEAD_BOOTSTRAP_TOKEN, which keeps it
out of the process list. --uninstall removes everything the agent installed
in the kernel and in DIR.`,
		Example: `  bulkhead agent --manager 10.0.0.1:8444 --bootstrap-token bhb_... \
      --ca-fingerprint 3f1c... --host-name hv-07 --state-dir /var/lib/bulkhead-agent
  bulkhead agent --manager 10.0.0.1:8444 --state-dir /var/lib/bulkhead-agent --host-name hv-07
  bulkhead agent --uninstall --state-dir /var/lib/bulkhead-agent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			cfg.CAFile = g.ca
			if cfg.BootstrapToken == "" {
				cfg.BootstrapToken = os.Getenv("BULKHEAD_BOOTSTRAP_TOKEN")
			}
			enf, err := newAgentEnforcer(cfg, dryRun, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if uninstall {
				if err := agent.Uninstall(ctx, cfg.StateDir, enf); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "agent removed: enforcement and %s\n", cfg.StateDir)
				return nil
			}
			a, err := agent.New(cfg, enf, log)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Manager, "manager", "127.0.0.1:8444", "the manager's agent address (its agentListen)")
	f.StringVar(&cfg.BootstrapToken, "bootstrap-token", "", "one-time token for the first start (bulkhead token create)")
	f.StringVar(&cfg.CAFingerprint, "ca-fingerprint", "", "SHA-256 of the manager's CA certificate, to trust it when enrolling (or --ca FILE)")
	f.StringVar(&cfg.StateDir, "state-dir", "/var/lib/bulkhead-agent", "directory for the key, certificates and last desired state")
	f.StringVar(&cfg.HostName, "host-name", "", "this host's name in the inventory (default: the system host name)")
	f.StringVar(&cfg.IfacePattern, "iface-pattern", "bhw*", "workload interface names (shell pattern)")
	f.StringVar(&cfg.Bridge, "bridge", "", "only ports of this bridge are workload interfaces")
	f.StringVar(&cfg.NetNS, "netns", "", "path of the network namespace to manage (default: the agent's own)")
	f.DurationVar(&cfg.DriftInterval, "drift-interval", 5*time.Second, "how often to check that the kernel still holds the policy")
	f.BoolVar(&uninstall, "uninstall", false, "remove the agent's kernel state and state dir, then exit")
	f.BoolVar(&dryRun, "dry-run", false, "follow the manager and log each desired state without enforcing it")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
