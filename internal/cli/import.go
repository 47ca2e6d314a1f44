package cli

import "github.com/spf13/cobra"

func newImportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Import inventory and flow records from outside Bulkhead",
	}
	cmd.AddCommand(newImportCMDBCmd(g), newImportFlowsCmd(g))
	return cmd
}
