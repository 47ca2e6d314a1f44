package cli

import "github.com/spf13/cobra"

func newImportCMDBCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "cmdb", Short: "(not yet) import a CMDB export", Hidden: true}
}
