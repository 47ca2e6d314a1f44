package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

func newSourceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "source",
		Short: "Inventory sources: vCenter syncs, CMDB imports, and what they disagree on",
		Long: `Inventory sources tell the manager about workloads besides the agents: a
vCenter (VMs, guest IPs, tags and categories, folders), synced periodically,
and CMDB exports ('bulkhead import cmdb'). The manager keeps every source's
facts with their age and merges them: a live agent binding beats an
operator's declaration, which beats imported facts; among those a fresh fact
beats a stale one (not observed for 30 days) and a newer one an older one.`,
	}
	cmd.AddCommand(newSourceAddCmd(g), newSourceListCmd(g), newSourceSyncCmd(g), newSourceDeleteCmd(g),
		newSourceConflictsCmd(g), newSourceFactsCmd(g))
	return cmd
}

func newSourceAddCmd(g *globals) *cobra.Command {
	var req api.SourceRequest
	var passwordFile string
	cmd := &cobra.Command{
		Use:   "add vcenter NAME --url URL --user USER --password-file FILE",
		Short: "Configure a vCenter to sync VMs, guest IPs, tags and folders from",
		Long: `Configure a vCenter as an inventory source. Every --interval the manager
reads its VMs (name, instance UUID, IPs from VMware Tools' guest info, folder
path) and their vSphere tags: a tag's category becomes the tag key and the
tag's name its value (category "app", tag "shop" -> app=shop). The password
is kept by the manager and never shown again.`,
		Example: `  bulkhead source add vcenter vc-east --url https://vc-east.example.com --user svc-bulkhead@vsphere.local --password-file vc.pass
  bulkhead source add vcenter lab --url https://127.0.0.1:8989/sdk --user user --password-file pw --insecure --interval 0`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if args[0] != "vcenter" {
				return fmt.Errorf("source kind %q: only vcenter sources are synced; import CMDB exports with 'bulkhead import cmdb'", args[0])
			}
			req.Kind, req.Name = args[0], args[1]
			if req.URL == "" {
				return errors.New("--url is required")
			}
			if passwordFile != "" {
				b, err := os.ReadFile(passwordFile)
				if err != nil {
					return fmt.Errorf("--password-file: %w", err)
				}
				req.Password = strings.TrimRight(string(b), "\r\n")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			src, err := c.CreateSource(ctx(cmd), req)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(src)
			}
			fmt.Fprintf(g.stdout, "source %s added (%s, every %s); sync it now with 'bulkhead source sync %s'\n", src.Name, src.URL, src.Interval, src.Name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.URL, "url", "", "the vCenter: https://HOST[/sdk]")
	fl.StringVar(&req.User, "user", "", "user name")
	fl.StringVar(&passwordFile, "password-file", "", "file holding the password (kept out of the process list and shell history)")
	fl.BoolVar(&req.Insecure, "insecure", false, "do not verify the vCenter's certificate")
	fl.StringVar(&req.Interval, "interval", "", `time between syncs, at least 1m (default 15m; "0" syncs only on request)`)
	return cmd
}

func newSourceListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List inventory sources with their record counts and last sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			srcs, err := c.Sources(ctx(cmd))
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(srcs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tURL\tINTERVAL\tRECORDS\tLAST SYNC\tLAST ERROR")
			for _, s := range srcs {
				last := "-"
				if s.LastSync != nil {
					last = s.LastSync.Local().Format(time.DateTime)
				}
				url, interval := dash(s.URL), dash(s.Interval)
				if s.Interval == "0s" {
					interval = "on request"
				}
				if !s.Configured {
					url, interval = "(imported)", "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.Kind, url, interval, s.Records, last, dash(s.LastError))
			}
			return tw.Flush()
		},
	}
}

func newSourceSyncCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sync NAME",
		Short: "Sync a configured source now and show what changed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.SyncSource(ctx(cmd), args[0])
			if err != nil {
				return err
			}
			return g.printInventoryResult(res, args[0])
		},
	}
}

func newSourceDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove a source (or an import) and its facts",
		Long: `Remove a source and every fact it gave. Workloads that only it described
are deleted, unless an agent binds them to a host interface; tags it gave
are removed from the others.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.DeleteSource(ctx(cmd), args[0])
			if err != nil {
				return err
			}
			return g.printInventoryResult(res, args[0])
		},
	}
}

func newSourceConflictsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "conflicts",
		Short: "Show what sources disagree on, and which fact the manager used",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			cs, err := c.InventoryConflicts(ctx(cmd))
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(cs)
			}
			if len(cs) == 0 {
				fmt.Fprintln(g.stdout, "no conflicts")
				return nil
			}
			return g.printConflicts(cs, "")
		},
	}
}

func newSourceFactsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "facts WORKLOAD",
		Short: "Show every fact about a workload: source, age, used or not and why",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if g.output != "table" {
				facts, err := c.WorkloadFacts(ctx(cmd), args[0])
				if err != nil {
					return err
				}
				return g.printData(facts)
			}
			return describeFacts(ctx(cmd), g, c, args[0])
		},
	}
}

// describeFacts prints a workload's facts as a table; describe workload
// shows it under the workload.
func describeFacts(ctx context.Context, g *globals, c *apiclient.Client, name string) error {
	wf, err := c.WorkloadFacts(ctx, name)
	if err != nil {
		return err
	}
	if !wf.Exists {
		fmt.Fprintf(g.stdout, "%s is not a workload; sources name it:\n", name)
	} else {
		fmt.Fprintln(g.stdout, "\nFacts:")
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ATTRIBUTE\tVALUE\tSOURCE\tAGE\tUSED\tWHY")
	for _, f := range wf.Facts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", f.Attribute, f.Value, sourceOf(f), ageOf(f), usedMark(f.Used), f.Reason)
	}
	return tw.Flush()
}
