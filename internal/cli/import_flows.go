package cli

import "github.com/spf13/cobra"

func newImportFlowsCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "zeek", Short: "(not yet) import a Zeek conn.log", Hidden: true}
}
