package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/apiclient"
)

// listRun is the RunE of a command that lists what fetch returns: with -o
// json or yaml the data as it came, else a table of header and one row
// per item.
func listRun[T any](g *globals, fetch func(*apiclient.Client, context.Context) ([]T, error), header []string, row func(T) []string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := g.checkOutput(); err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		items, err := fetch(c, ctx(cmd))
		if err != nil {
			return err
		}
		if g.output != "table" {
			return g.printData(items)
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, it := range items {
			fmt.Fprintln(tw, strings.Join(row(it), "\t"))
		}
		return tw.Flush()
	}
}
