package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func newLoginCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "login --server URL --token-file FILE --ca FILE",
		Short: "Check a manager and token, and remember them for later commands",
		Long: `Check that the manager answers with the given token and CA, then write the
CLI config file (mode 0600) so that later commands need no flags.`,
		Example: "  bulkhead login --server https://127.0.0.1:8443 --token-file /var/lib/bulkhead/admin.token --ca /var/lib/bulkhead/ca.crt",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := g.connection()
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			who, err := c.WhoAmI(ctx(cmd))
			if err != nil {
				return fmt.Errorf("login to %s: %w", conn.Server, err)
			}
			abs := func(p string) string {
				if p == "" {
					return ""
				}
				if a, err := filepath.Abs(p); err == nil {
					return a
				}
				return p
			}
			conn.TokenFile, conn.CA = abs(conn.TokenFile), abs(conn.CA)
			b, err := yaml.Marshal(conn)
			if err != nil {
				return err
			}
			path := g.configPath()
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "logged in to %s as %s (role %s); settings saved in %s\n", conn.Server, who.Name, who.Role, path)
			return nil
		},
	}
}
