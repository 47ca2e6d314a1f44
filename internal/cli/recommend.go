package cli

import "github.com/spf13/cobra"

func newRecommendCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "recommend", Short: "(not yet) recommend a policy", Hidden: true}
}

func newDiscoverCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "discover", Short: "(not yet) discover applications", Hidden: true}
}
