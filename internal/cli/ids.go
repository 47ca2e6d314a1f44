package cli

import "github.com/spf13/cobra"

// newIDSCmd is `bulkhead ids`: signature sets, alerts and offline reading.
// Its subcommands live in ids_*.go.
func newIDSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ids",
		Short: "Intrusion detection and prevention: signature sets, alerts, offline reading",
	}
	cmd.AddCommand(idsRulesetCmds(g)...) // ids_rules.go: import, rulesets, rules
	cmd.AddCommand(idsAlertCmds(g)...)   // ids_alerts.go: alerts
	cmd.AddCommand(idsReadCmds(g)...)    // ids_read.go: read
	return cmd
}
