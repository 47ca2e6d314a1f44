package cli

import "github.com/spf13/cobra"

func newMapCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "map", Short: "(not yet) the application map", Hidden: true}
}

func newComplianceCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "compliance", Short: "(not yet) flow compliance", Hidden: true}
}

func newWhatIfCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "whatif", Short: "(not yet) replay flows against a draft", Hidden: true}
}
