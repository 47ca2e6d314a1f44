package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/apiclient"
)

func newHistoryCmd(g *globals) *cobra.Command {
	var limit int
	var diff int64
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List policy revisions, or show what one changed",
		Example: `  bulkhead history
  bulkhead history --diff 7     # changes from revision 6 to 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if diff > 0 {
				d, err := c.Diff(ctx(cmd), diff-1, diff)
				if err != nil {
					return err
				}
				if g.output != "table" {
					return g.printData(d)
				}
				g.printChanges(d.Changes, true)
				return nil
			}
			revs, err := c.Revisions(ctx(cmd), limit)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(revs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tTIME\tAUTHOR\tSUMMARY")
			for _, r := range revs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Number, r.Time.Local().Format(time.DateTime), r.Author, r.Summary)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "how many revisions to list")
	cmd.Flags().Int64Var(&diff, "diff", 0, "show the changes made by this revision")
	return cmd
}

func newRollbackCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback REVISION",
		Short: "Publish an earlier revision's policy as a new revision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("revision %q: not a revision number", args[0])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Rollback(ctx(cmd), n)
			if err != nil {
				return serverError(err)
			}
			if g.output != "table" {
				return g.printData(resp)
			}
			g.printChanges(resp.Changes, false)
			fmt.Fprintf(g.stdout, "revision %d published (policy of revision %d)\n", resp.Revision, n)
			return nil
		},
	}
}

func newAuditCmd(g *globals) *cobra.Command {
	var q apiclient.AuditQuery
	var showDiff bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: who changed what, when, with the diff",
		Example: `  bulkhead audit --since 1h
  bulkhead audit --object Policy/shop --diff`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			entries, err := c.Audit(ctx(cmd), q)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(entries)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tOBJECT\tREVISION")
			for _, e := range entries {
				rev := "-"
				if e.Revision > 0 {
					rev = strconv.FormatInt(e.Revision, 10)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Actor, e.Action, dash(e.Object), rev)
				if showDiff && e.Diff != "" {
					tw.Flush()
					for _, l := range strings.Split(strings.TrimRight(e.Diff, "\n"), "\n") {
						fmt.Fprintf(g.stdout, "    %s\n", l)
					}
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&q.Since, "since", "", "only entries after this time (RFC 3339) or this long ago (10m, 24h)")
	cmd.Flags().StringVar(&q.Actor, "actor", "", "only this token name")
	cmd.Flags().StringVar(&q.Object, "object", "", "only this object (Kind/name)")
	cmd.Flags().IntVar(&q.Limit, "limit", 200, "at most this many entries")
	cmd.Flags().BoolVar(&showDiff, "diff", false, "print each entry's diff")
	return cmd
}
