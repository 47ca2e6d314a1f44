package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
)

// isHostKind reports whether a 'get' argument names agent hosts, which are
// not a policy kind.
func isHostKind(s string) bool {
	switch strings.ToLower(s) {
	case "host", "hosts":
		return true
	}
	return false
}

// getHosts prints the agent hosts, or the one named.
func (g *globals) getHosts(cmd *cobra.Command, names []string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	hosts, err := c.Hosts(ctx(cmd))
	if err != nil {
		return err
	}
	if len(names) == 1 {
		var one []api.Host
		for _, h := range hosts {
			if h.Name == names[0] {
				one = append(one, h)
			}
		}
		if len(one) == 0 {
			return fmt.Errorf("host %q not found", names[0])
		}
		if g.output != "table" {
			return g.printData(one[0])
		}
		hosts = one
	}
	if g.output != "table" {
		return g.printData(hosts)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCONNECTED\tIN-SYNC\tREALIZED\tDESIRED\tPUBLISHED\tWORKLOADS\tLAST-SEEN\tERROR")
	now := time.Now()
	for _, h := range hosts {
		connected := "no"
		switch {
		case h.Revoked != nil:
			connected = "revoked"
		case h.Connected:
			connected = "yes"
		}
		seen := "never"
		if h.LastSeen != nil {
			seen = ago(now.Sub(*h.LastSeen))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", h.Name, connected, yesNo(h.InSync),
			h.RealizedRevision, h.DesiredRevision, h.PublishedRevision, h.Workloads, seen, dash(h.LastError))
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ago says how long ago something was, coarsely.
func ago(d time.Duration) string {
	switch {
	case d < 2*time.Second:
		return "now"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue one-time bootstrap tokens that enroll agent hosts",
		Long: `A bootstrap token lets one host enroll: its agent sends the token with a
certificate request and gets a client certificate from the manager's CA,
which it uses from then on. A token works once, and expires.`,
	}
	var req api.BootstrapTokenRequest
	create := &cobra.Command{
		Use:   "create [--ttl 1h] [--host NAME]",
		Short: "Create a bootstrap token; prints it with the command line that enrolls a host",
		Example: `  bulkhead token create --ttl 1h
  bulkhead token create --host hv-07 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			tok, err := c.CreateBootstrapToken(ctx(cmd), req)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(tok)
			}
			host := tok.Host
			if host == "" {
				host = "NAME"
			}
			fmt.Fprintf(g.stdout, "token:          %s\n", tok.Secret)
			fmt.Fprintf(g.stdout, "expires:        %s (one use)\n", tok.Expires.Local().Format(time.DateTime))
			fmt.Fprintf(g.stdout, "ca-fingerprint: %s\n", tok.CAFingerprint)
			if tok.AgentAddress == "" {
				fmt.Fprintln(g.stdout, "\nThe manager's agent channel is off (agentListen is empty): no agent can enroll.")
				return nil
			}
			fmt.Fprintf(g.stdout, "\nOn the host, run:\n  bulkhead agent --manager %s --bootstrap-token %s --ca-fingerprint %s --host-name %s --state-dir /var/lib/bulkhead-agent\n",
				tok.AgentAddress, tok.Secret, tok.CAFingerprint, host)
			return nil
		},
	}
	create.Flags().StringVar(&req.TTL, "ttl", "1h", "how long the token can be used")
	create.Flags().StringVar(&req.Host, "host", "", "the only host name the token may enroll (default: any)")
	cmd.AddCommand(create)
	return cmd
}
