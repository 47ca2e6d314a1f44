package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/lab"
	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"github.com/bulkhead/bulkhead/internal/lab/scenario"
)

func newLabCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A data center in network namespaces to try Bulkhead on (root)",
		Long: `The lab builds a small data center on this machine out of network namespaces:
hosts joined by an underlay, workloads routed behind them (veth, Calico style),
a manager, one agent per host, and applications in the workloads that speak real
protocols (HTTP, TLS 1.0-1.3, DNS, SSH, LDAP, SQL-like and cache-like services)
the way a shop, its shared services, its users and an attacker would.

Everything it starts is recorded in DIR/state.json; 'bulkhead lab down' removes
every process, namespace, interface, nftables table and file it made, also
after a crash. Traffic stays inside the lab's namespaces and loopback.

DIR is --dir, else $` + lab.DirEnv + `, else ` + lab.DefaultDir + `.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "the lab's directory (default $"+lab.DirEnv+" or "+lab.DefaultDir+")")
	labDir := func() string {
		if dir != "" {
			return dir
		}
		return lab.DefaultDirFromEnv()
	}
	load := func(cmd *cobra.Command) (*lab.State, error) {
		if err := lab.CheckRoot(cmd.Name()); err != nil {
			return nil, err
		}
		return lab.LoadState(labDir())
	}
	cmd.AddCommand(
		newLabUpCmd(g, labDir),
		newLabDownCmd(g, labDir),
		newLabStatusCmd(g, load),
		newLabExecCmd(load),
		newLabEnvCmd(g, load),
		newLabWaitCmd(g, load),
		newLabAppCmd(g),
	)
	return cmd
}

func newLabUpCmd(g *globals, dir func() string) *cobra.Command {
	var o lab.Options
	cmd := &cobra.Command{
		Use:   "up [--scenario shop|FILE] [--hosts N]",
		Short: "Build the lab and start everything in it (a no-op if it already runs)",
		Long: `Build the lab: namespaces for the hosts, the underlay and the workloads; a
manager on loopback; an agent per host, enrolled with a bootstrap token; the
scenario's workloads declared in the manager's inventory with their CMDB tags;
and the scenario's applications in the workloads.

Running it again while the lab is healthy changes nothing and shows its status;
a lab that is not healthy (a process died, 'up' was interrupted) is removed and
built again.

Built-in scenarios: ` + strings.Join(scenario.Builtins(), ", ") + `. A scenario file is YAML; see
internal/lab/scenario/builtin/shop.yaml.`,
		Example: `  sudo bulkhead lab up
  sudo bulkhead lab up --hosts 5
  sudo bulkhead lab up --scenario ./my-dc.yaml --dir /tmp/lab2 --prefix lab2 \
      --listen 127.0.0.1:0 --agent-listen 127.0.0.1:0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			o.Dir, o.Progress = dir(), g.stderr
			// Interrupted, Up removes what it made so far.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, already, err := lab.Up(ctx, o)
			if err != nil {
				return err
			}
			if already {
				fmt.Fprintf(g.stderr, "the lab already runs in %s: nothing to do\n", st.Dir)
			}
			if err := printLabStatus(g, st.Status(cmd.Context())); err != nil {
				return err
			}
			if g.output == "table" && !already {
				fmt.Fprintf(g.stdout, "\nPoint the CLI at the lab's manager:  eval \"$(bulkhead lab env%s)\"\n", dirFlag(st.Dir))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Scenario, "scenario", lab.DefaultScenario, "a built-in scenario ("+strings.Join(scenario.Builtins(), ", ")+") or a scenario file")
	f.IntVar(&o.Hosts, "hosts", 0, "spread the workloads over N hosts hv1..hvN (default: the scenario's hosts)")
	f.StringVar(&o.Prefix, "prefix", lab.DefaultPrefix, "start of every namespace name (two labs need two prefixes)")
	f.StringVar(&o.Listen, "listen", lab.DefaultListen, "the manager's API address (loopback; port 0: any free port)")
	f.StringVar(&o.AgentListen, "agent-listen", lab.DefaultAgentListen, "the manager's agent channel address (loopback; port 0: any free port)")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Second, "how long to wait for each piece to come up")
	return cmd
}

// dirFlag is " --dir DIR" unless DIR is what lab commands use by default.
func dirFlag(dir string) string {
	if dir == lab.DefaultDirFromEnv() {
		return ""
	}
	return " --dir " + dir
}

func newLabDownCmd(g *globals, dir func() string) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop everything the lab started and remove every namespace and file it made",
		Long: `Stop the lab's processes (those recorded in DIR/state.json, and any other still
inside the lab's namespaces or running from DIR), delete every namespace whose
name starts with the lab's prefix (with their interfaces, routes and nftables
tables), and remove the lab's files. When DIR holds no state (a crash before
'up' wrote it, or DIR was removed), --prefix says which namespaces to delete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lab.Down(dir(), prefix, g.stderr); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "lab removed")
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", lab.DefaultPrefix, "namespace prefix to remove when DIR holds no state")
	return cmd
}

func newLabStatusCmd(g *globals, load func(*cobra.Command) (*lab.State, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the lab's hosts, workloads (IPs, tags, applications) and processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			st, err := load(cmd)
			if err != nil {
				return err
			}
			return printLabStatus(g, st.Status(cmd.Context()))
		},
	}
}

func printLabStatus(g *globals, s lab.Status) error {
	if g.output != "table" {
		return g.printData(s)
	}
	health := "healthy"
	if !s.Healthy {
		health = "NOT HEALTHY"
	}
	w := g.stdout
	fmt.Fprintf(w, "Lab %s in %s (namespaces %s-*): %s\n", s.Scenario, s.Dir, s.Prefix, health)
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	for _, p := range s.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", p)
	}
	run := func(ok bool) string {
		if ok {
			return "running"
		}
		return "STOPPED"
	}
	fmt.Fprintf(w, "Manager:  %s  (pid %d, %s; agents connect to %s)\n", s.Manager.URL, s.Manager.PID, run(s.Manager.Running), s.Manager.AgentAddress)
	fmt.Fprintf(w, "          admin token %s, CA %s, log %s\n", s.Manager.TokenFile, s.Manager.CA, s.Manager.Log)
	if s.Manager.APIError != "" {
		fmt.Fprintf(w, "          API: %s\n", s.Manager.APIError)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNAMESPACE\tAGENT\tCONNECTED\tIN-SYNC\tREALIZED\tERROR")
	for _, h := range s.Hosts {
		agent := fmt.Sprintf("%d %s", h.AgentPID, run(h.AgentRunning))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", h.Name, h.NetNS, agent, yesNo(h.Connected), yesNo(h.InSync), h.RealizedRevision, dash(h.LastError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tHOST\tIPS\tTAGS\tAPPS")
	for _, wl := range s.Workloads {
		running, names := 0, []string{}
		for _, a := range wl.Apps {
			if a.Running {
				running++
				names = append(names, a.Name)
			} else {
				names = append(names, a.Name+"(STOPPED)")
			}
		}
		apps := "-"
		if len(wl.Apps) > 0 {
			apps = fmt.Sprintf("%d/%d %s", running, len(wl.Apps), strings.Join(names, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", wl.Name, wl.Host, strings.Join(wl.IPs, ","), tagList(wl.Tags), apps)
	}
	return tw.Flush()
}

func tagList(tags map[string]string) string {
	if len(tags) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + tags[k]
	}
	return strings.Join(keys, ",")
}

func newLabExecCmd(load func(*cobra.Command) (*lab.State, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec WORKLOAD|HOST [--] COMMAND [ARG...]",
		Short: "Run a command inside a workload's (or a host's) network namespace",
		Long: `Run a command inside a workload's network namespace, as the workload would:
its address, its routes, through its host's firewall. Names resolve with the lab's
DNS server. Given a host's name, the command runs in the host's namespace (where
the agent's nftables table is). The exit status is the command's.`,
		Example: `  bulkhead lab exec shopper1 -- curl -s http://www.lab.test/
  bulkhead lab exec attacker -- nc -zv -w 2 db1.lab.test 5432
  bulkhead lab exec hv2 -- nft list table inet bulkhead`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := load(cmd)
			if err != nil {
				return err
			}
			ns := ""
			if w := st.Workload(args[0]); w != nil {
				ns = w.NetNS
			} else if h := st.Host(args[0]); h != nil {
				ns = filepath.Base(h.NetNS)
			} else {
				names := []string{}
				for _, w := range st.Workloads {
					names = append(names, w.Name)
				}
				for _, h := range st.Hosts {
					names = append(names, h.Name)
				}
				return fmt.Errorf("lab exec: no workload or host %q (there are: %s)", args[0], strings.Join(names, ", "))
			}
			rest := args[1:]
			if rest[0] == "--" {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				return errors.New("lab exec: no command")
			}
			ip, err := exec.LookPath("ip")
			if err != nil {
				return errors.New("lab exec: needs the ip command (iproute2)")
			}
			// Become the command: its exit status and signals are the
			// caller's to see, as with ssh or docker exec.
			return syscall.Exec(ip, append([]string{"ip", "netns", "exec", ns}, rest...), os.Environ())
		},
	}
	// Everything after the workload belongs to the command, flags too.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabEnvCmd(g *globals, load func(*cobra.Command) (*lab.State, error)) *cobra.Command {
	return &cobra.Command{
		Use:     "env",
		Short:   "Print the exports that point the CLI at the lab's manager",
		Example: `  eval "$(bulkhead lab env)"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := load(cmd)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "export BULKHEAD_SERVER=%s\nexport BULKHEAD_TOKEN_FILE=%s\nexport BULKHEAD_CA=%s\n",
				shellQuote(st.Manager.URL), shellQuote(st.Manager.TokenFile), shellQuote(st.Manager.CA))
			fmt.Fprintf(g.stdout, "# the lab's manager, %s; undo with: unset BULKHEAD_SERVER BULKHEAD_TOKEN_FILE BULKHEAD_CA\n", st.Dir)
			return nil
		},
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:+=,@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newLabWaitCmd(g *globals, load func(*cobra.Command) (*lab.State, error)) *cobra.Command {
	var pairs int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait [--pairs N] [--timeout D]",
		Short: "Wait until the manager has flow records between N workload pairs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := load(cmd)
			if err != nil {
				return err
			}
			got, err := st.WaitFlows(cmd.Context(), pairs, timeout, g.stderr)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "flows between %d workload pairs, e.g.:\n", len(got))
			for i, p := range got {
				if i == 8 {
					fmt.Fprintf(g.stdout, "  ... and %d more\n", len(got)-i)
					break
				}
				fmt.Fprintf(g.stdout, "  %s\n", p)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&pairs, "pairs", 5, "how many distinct source/destination workload pairs")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}

// newLabAppCmd is the command the lab runs inside a workload's namespace;
// hidden, because it is the lab's, not the user's.
func newLabAppCmd(g *globals) *cobra.Command {
	var cfg, cfgFile, logLevel string
	cmd := &cobra.Command{
		Use:    "app NAME (--config JSON | --config-file FILE)",
		Short:  "Run one lab application (servers: http, https, api, db, cache, dns, ssh, ldap; clients: shopper, ...)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, ok := apps.Lookup(args[0]); !ok {
				return fmt.Errorf("lab app: unknown application %q (known: %s)", args[0], strings.Join(apps.Names(), ", "))
			}
			data := []byte(cfg)
			if cfgFile != "" {
				if cfg != "" {
					return errors.New("lab app: give --config or --config-file, not both")
				}
				var err error
				if data, err = os.ReadFile(cfgFile); err != nil {
					return fmt.Errorf("lab app: %w", err)
				}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level})))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return apps.Main(ctx, args[0], data)
		},
	}
	cmd.Flags().StringVar(&cfg, "config", "", "the application's configuration, JSON")
	cmd.Flags().StringVar(&cfgFile, "config-file", "", "file holding the configuration, JSON")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
