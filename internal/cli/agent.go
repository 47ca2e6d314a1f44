package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/idsagent"
	"github.com/bulkhead/bulkhead/internal/nft"
)

func newAgentCmd(g *globals) *cobra.Command {
	var (
		cfg       agent.Config
		uninstall bool
		dryRun    bool
		logLevel  string
		flows     flowFlags
		l7Queue   uint16
		l7Queues  uint16
		idsQueue  uint16
		idsQueues uint16
		idsEVELog string
		idsClosed bool
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

It reports the connections its rules decided as flow records, from conntrack
(dumped every --flow-dump-interval for long flows; it turns on
nf_conntrack_acct and nf_conntrack_timestamp in the namespace) and the packets
the data plane dropped from NFLOG group --nflog-group. Records wait in memory,
bounded, while the manager is unreachable.

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
			if l7Queues == 0 || int(l7Queue)+int(l7Queues)-1 > 65535 {
				return fmt.Errorf("--l7-queues %d: want 1 to %d queues from --l7-queue %d", l7Queues, 65536-int(l7Queue), l7Queue)
			}
			if l7Queue == 0 {
				return errors.New("--l7-queue: must not be 0")
			}
			if idsQueue == 0 || idsQueues == 0 || int(idsQueue)+int(idsQueues)-1 > 65535 {
				return fmt.Errorf("--ids-queue %d --ids-queues %d: want queue 1 or more and 1 to %d queues", idsQueue, idsQueues, 65536-int(max(idsQueue, 1)))
			}
			if q := int(idsQueue); q+int(idsQueues) > int(l7Queue) && int(l7Queue)+int(l7Queues) > q {
				return fmt.Errorf("--ids-queue %d-%d overlaps --l7-queue %d-%d", idsQueue, q+int(idsQueues)-1, l7Queue, int(l7Queue)+int(l7Queues)-1)
			}
			if flows.nflogGroup == 0 {
				return errors.New("--nflog-group: must not be 0")
			}
			if flows.dumpInterval <= 0 {
				return fmt.Errorf("--flow-dump-interval %s: must be positive", flows.dumpInterval)
			}
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			cfg.CAFile = g.ca
			if cfg.BootstrapToken == "" {
				cfg.BootstrapToken = os.Getenv("BULKHEAD_BOOTSTRAP_TOKEN")
			}
			alerts := &alertSink{log: log.With("component", "ids")}
			nc := nft.Config{LogGroup: flows.nflogGroup, L7Queue: l7Queue, L7Queues: l7Queues,
				IDSQueue: idsQueue, IDSQueues: idsQueues, IDSFailClosed: idsClosed}
			ic := idsagent.Config{Host: cfg.HostName, EVELog: idsEVELog, Sink: alerts.send}
			enf, err := newAgentEnforcer(cfg, nc, ic, dryRun, log)
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
			alerts.set(a.SendAlert)
			if dryRun {
				// Nothing marks connections in a dry run: there is nothing
				// to report, and reading conntrack needs privileges a dry
				// run should not.
				log.Info("dry run: flow records are off")
				return a.Run(ctx)
			}
			ctx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Go(func() { runFlowSources(ctx, a, cfg.NetNS, flows, log) })
			err = a.Run(ctx)
			cancel()
			wg.Wait()
			return err
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
	f.DurationVar(&flows.dumpInterval, "flow-dump-interval", flow.DefaultDumpInterval, "how often conntrack is dumped to report long flows")
	f.Uint16Var(&l7Queue, "l7-queue", nft.DefaultL7Queue, "the NFQUEUE number for payload packets of connections an L7 rule must decide (read by the agent while the policy has L7 rules)")
	f.Uint16Var(&l7Queues, "l7-queues", uint16(min(runtime.NumCPU(), 64)), "how many consecutive queues from --l7-queue the kernel spreads those packets over by CPU, one reader thread each")
	f.Uint16Var(&idsQueue, "ids-queue", nft.DefaultIDSQueue, "the first NFQUEUE number for packets of workloads an IDS profile inspects in prevent mode (read by the agent while the policy has IDS workloads)")
	f.Uint16Var(&idsQueues, "ids-queues", uint16(min(runtime.NumCPU(), 64)), "how many consecutive queues from --ids-queue the kernel balances those packets over by flow hash, one reader thread each")
	f.StringVar(&idsEVELog, "ids-eve-log", "", "also append every IDS alert to this file as EVE JSON, one record per line")
	f.BoolVar(&idsClosed, "ids-fail-closed", false, "drop prevent-mode packets while no IDS reader runs or its queue is full (default: they pass uninspected)")
	f.Uint16Var(&flows.nflogGroup, "nflog-group", nft.DefaultLogGroup, "the NFLOG group the data plane sends dropped and rejected packets to (the nft data plane's default)")
	return cmd
}

type flowFlags struct {
	dumpInterval time.Duration
	nflogGroup   uint16
}

// decodeMark reads the data plane's conntrack and packet marks (nft.Mark)
// for the flow collectors.
func decodeMark(m uint32) (uint32, flow.Verdict) {
	v := nft.Mark(m).Verdict()
	if v.Action == 0 {
		return 0, 0 // not decided by Bulkhead, whatever the rule bits say
	}
	// nft's actions and flow's verdicts share their numbers
	// (internal/flow/markcheck).
	return v.Rule, flow.Verdict(v.Action)
}

// Only allowed connections are confirmed in conntrack, so a dump needs
// only those whose action bits say allow: the kernel filters by
// mark&dumpMask == dumpMark.
var (
	dumpMark = uint32(nft.MakeMark(nft.Verdict{Action: nft.Allow}, false))
	// Every action bit set, and nothing else: rule 0, not logged, egress.
	dumpMask = uint32(nft.MakeMark(nft.Verdict{Action: nft.Allow | nft.Drop | nft.Reject}, false))
)

// runFlowSources turns the conntrack table and the NFLOG group of the
// namespace at nsPath ("" the agent's own) into flow records in the agent's
// buffer, until ctx is done. A source that fails is started again with
// backoff; the agent enforces all the same.
func runFlowSources(ctx context.Context, a *agent.Agent, nsPath string, ff flowFlags, log *slog.Logger) {
	log = log.With("component", "flow")
	fd := 0
	if nsPath != "" {
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			log.Error("flow records off: cannot open the namespace", "netns", nsPath, "err", err)
			return
		}
		defer ns.Close()
		fd = int(ns)
	}
	if err := setConntrackSysctls(nsPath); err != nil {
		// conntrack may not be loaded yet; the collector's netlink socket
		// loads it, and the second try below succeeds.
		log.Debug("conntrack accounting before the collector started", "err", err)
	}
	host := a.HostName()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		retry(ctx, log, "conntrack collector", func() error {
			c, err := flow.NewCollector(flow.CollectorConfig{
				Host: host, NetNS: fd, DumpInterval: ff.dumpInterval,
				Local: a.Local, Workload: a.Workload, DecodeMark: decodeMark,
				DumpMark: dumpMark, DumpMask: dumpMask, Annotate: a.AnnotateFlow, Log: log,
			}, a.FlowBuffer())
			if err != nil {
				return err
			}
			go func() {
				select {
				case <-c.Ready():
				case <-ctx.Done():
					return
				}
				if err := setConntrackSysctls(nsPath); err != nil {
					log.Warn("flow byte and packet counts or start times may be missing", "netns", nsPath, "err", err)
				}
			}()
			return c.Run(ctx)
		})
	})
	wg.Go(func() {
		retry(ctx, log, "NFLOG drop reader", func() error {
			d, err := flow.NewDropReader(flow.DropReaderConfig{
				Host: host, NetNS: fd, Group: ff.nflogGroup,
				DecodeMark: decodeMark, Workload: a.Workload, Log: log,
			}, a.FlowBuffer())
			if err != nil {
				return err
			}
			return d.Run(ctx)
		})
	})
}

// retry runs one flow source until ctx is done, starting it again with
// backoff when it fails.
func retry(ctx context.Context, log *slog.Logger, what string, run func() error) {
	const minWait, maxWait = time.Second, time.Minute
	wait := minWait
	for {
		started := time.Now()
		err := run()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped")
		}
		if time.Since(started) > maxWait {
			wait = minWait // it ran for a while: a new failure
		}
		log.Error(what+" failed; restarting", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}

// setConntrackSysctls turns on what flow records need in the namespace at
// nsPath ("" the caller's): conntrack's byte and packet counters and its
// start and stop timestamps. They are per namespace, and /proc/sys/net
// shows the namespace of the thread that opens it.
func setConntrackSysctls(nsPath string) error {
	write := func() error {
		for _, name := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
			if err := os.WriteFile("/proc/sys/net/netfilter/"+name, []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("agent: sysctl net.netfilter.%s=1 in %s: %w", name, nsName(nsPath), err)
			}
		}
		return nil
	}
	if nsPath == "" {
		return write()
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("agent: netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread never leaves the namespace: a goroutine that ends
		// locked to its thread takes the thread with it.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("agent: enter netns %s: %w", nsPath, err)
			return
		}
		errc <- write()
	}()
	return <-errc
}

func nsName(path string) string {
	if path == "" {
		return "the agent's namespace"
	}
	return path
}
