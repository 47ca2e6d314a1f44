package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
)

func newAPITokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apitoken",
		Short: "Manage API tokens and their roles (admin only)",
		Long: `API tokens authenticate every call to the manager. Roles:
  admin     everything, including tokens
  operator  edit policy and inventory
  auditor   read only`,
	}
	var req api.TokenRequest
	create := &cobra.Command{
		Use:     "create --name NAME --role ROLE [--ttl 720h]",
		Short:   "Create a token; its secret is printed once",
		Example: "  bulkhead apitoken create --name ci --role operator --ttl 720h",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(ctx(cmd), req)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(t)
			}
			fmt.Fprintln(g.stdout, t.Secret)
			fmt.Fprintf(g.stderr, "token %s (%s, role %s) created; the secret above is shown only once\n", t.ID, t.Name, t.Role)
			return nil
		},
	}
	create.Flags().StringVar(&req.Name, "name", "", "who or what will use the token")
	create.Flags().StringVar(&req.Role, "role", api.RoleAuditor, "admin, operator or auditor")
	create.Flags().StringVar(&req.TTL, "ttl", "", "lifetime, e.g. 24h (default: no expiry)")
	create.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (without secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			toks, err := c.Tokens(ctx(cmd))
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(toks)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tEXPIRES")
			for _, t := range toks {
				exp := "never"
				if t.Expires != nil {
					exp = t.Expires.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.Created.Local().Format(time.DateTime), exp)
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Revoke a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteToken(ctx(cmd), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "token %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}
