package cli

import "github.com/spf13/cobra"

func newSourceCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "source", Short: "(not yet) inventory sources", Hidden: true}
}
