package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
)

func newEvalCmd(g *globals) *cobra.Command {
	var req api.EvalRequest
	var icmpType, icmpCode int
	cmd := &cobra.Command{
		Use:   "eval --from IP --to IP [--proto tcp --port 443]",
		Short: "Decide a flow: the verdict and the rule that decided it",
		Long: `Evaluate a flow against the published policy (or --revision N) with the same
evaluator that defines Bulkhead's semantics: first match in category, section and
rule order, at the source workload's egress and the destination's ingress.
Staged rules are reported but not enforced.`,
		Example: `  bulkhead eval --from 10.10.1.10 --to 10.10.2.10 --proto tcp --port 8080
  bulkhead eval --from 10.10.1.10 --to 10.10.2.10 --port 443 --app APP_TLS --tls-version 1.3
  bulkhead eval --from 10.10.9.5 --to 10.10.2.10 --proto icmp --icmp-type 8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if cmd.Flags().Changed("icmp-type") {
				req.ICMPType = &icmpType
			}
			if cmd.Flags().Changed("icmp-code") {
				req.ICMPCode = &icmpCode
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Eval(ctx(cmd), req)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(resp)
			}
			fmt.Fprintf(g.stdout, "verdict: %s by rule %d (%s), revision %d\n", resp.Verdict, resp.RuleID, resp.Rule, resp.Revision)
			if !resp.Enforced {
				fmt.Fprintln(g.stdout, "note: neither address is a workload's, so no Bulkhead host enforces this flow")
			}
			if resp.StagedRuleID != 0 && (resp.StagedRuleID != resp.RuleID || resp.StagedVerdict != resp.Verdict) {
				fmt.Fprintf(g.stdout, "staged: would be %s by rule %d (%s) once staged rules are enforced\n", resp.StagedVerdict, resp.StagedRuleID, resp.StagedRule)
			}
			if len(resp.Points) > 0 {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "POINT\tWORKLOAD\tACTION\tRULE\tSTAGED")
				for _, p := range resp.Points {
					point := "egress"
					if p.Direction == "in" {
						point = "ingress"
					}
					staged := "-"
					if p.StagedRuleID != 0 {
						staged = fmt.Sprintf("%s by %d (%s)", p.StagedAction, p.StagedRuleID, p.StagedRule)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d (%s)\t%s\n", point, p.Workload, p.Action, p.RuleID, p.Rule, staged)
				}
				tw.Flush()
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.From, "from", "", "source IP")
	f.StringVar(&req.To, "to", "", "destination IP")
	f.StringVar(&req.Proto, "proto", "tcp", "protocol: tcp, udp, sctp, icmp, icmpv6 or a number")
	f.IntVar(&req.Port, "port", 0, "destination port")
	f.IntVar(&icmpType, "icmp-type", 0, "ICMP type")
	f.IntVar(&icmpCode, "icmp-code", 0, "ICMP code")
	f.StringVar(&req.App, "app", "", "application identity, e.g. APP_TLS, APP_SSH, APP_HTTP")
	f.StringVar(&req.TLSVersion, "tls-version", "", "negotiated TLS version: 1.0, 1.1, 1.2 or 1.3")
	f.StringVar(&req.User, "user", "", "user behind the connection")
	f.StringVar(&req.FQDN, "fqdn", "", "destination name")
	f.Int64Var(&req.Revision, "revision", 0, "revision to evaluate against (default: latest)")
	cmd.MarkFlagRequired("from")
	cmd.MarkFlagRequired("to")
	return cmd
}
