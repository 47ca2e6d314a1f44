package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
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
		Short: "Inventory and directory sources: vCenter and LDAP syncs, CMDB imports, and what they disagree on",
		Long: `Inventory sources tell the manager about workloads besides the agents: a
vCenter (VMs, guest IPs, tags and categories, folders), synced periodically,
and CMDB exports ('bulkhead import cmdb'). The manager keeps every source's
facts with their age and merges them: a live agent binding beats an
operator's declaration, which beats imported facts; among those a fresh fact
beats a stale one (not observed for 30 days) and a newer one an older one.

Directory sources (LDAP, Active Directory) give users and groups instead of
workloads: see 'bulkhead source add ldap' and 'bulkhead identity'.`,
	}
	add := newSourceAddCmd(g)
	add.AddCommand(newSourceAddLDAPCmd(g))
	cmd.AddCommand(add, newSourceListCmd(g), newSourceSyncCmd(g), newSourceDeleteCmd(g),
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
				return fmt.Errorf("source kind %q: want vcenter or ldap; import CMDB exports with 'bulkhead import cmdb'", args[0])
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
		RunE: listRun(g, (*apiclient.Client).Sources,
			[]string{"NAME", "KIND", "URL", "INTERVAL", "RECORDS", "LAST SYNC", "LAST ERROR"},
			func(s api.Source) []string {
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
				return []string{s.Name, s.Kind, url, interval, strconv.Itoa(s.Records), last, dash(s.LastError)}
			}),
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
			if ldap, err := isDirectorySource(cmd, c, args[0]); err != nil {
				return err
			} else if ldap {
				res, err := c.SyncDirectorySource(ctx(cmd), args[0])
				if err != nil {
					return err
				}
				return g.printDirectorySync(res)
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
			if ldap, err := isDirectorySource(cmd, c, args[0]); err != nil {
				return err
			} else if ldap {
				if err := c.DeleteDirectorySource(ctx(cmd), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "directory source %s deleted with its users and groups\n", args[0])
				return nil
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

// newSourceAddLDAPCmd is "source add ldap": cobra picks it before the
// parent's "add KIND NAME" form.
func newSourceAddLDAPCmd(g *globals) *cobra.Command {
	var req api.DirectorySourceRequest
	var passwordFile string
	cmd := &cobra.Command{
		Use:   "ldap NAME --url ldap://HOST:389 --base-dn DN [--bind-dn DN --password-file FILE]",
		Short: "Configure an LDAP server or Active Directory to sync users and groups from",
		Long: `Configure a directory (LDAP, Active Directory) as a source of users and
groups. Every --interval the manager binds (simple bind; --start-tls, or an
ldaps:// URL, for TLS), reads every user and group under --base-dn with paged
searches, and resolves nested groups (cycles are safe): a user in hr-managers,
which is a member of hr, is in hr. A Group's directoryGroups then match the
connections of those users.

The default filters find Active Directory's users and groups (member DNs),
OpenLDAP's inetOrgPerson and groupOfNames/groupOfUniqueNames, and RFC 2307's
posixAccount and posixGroup (memberUid). A user is named by sAMAccountName,
else uid, else cn; a group by cn. Names compare without case.`,
		Example: `  bulkhead source add ldap corp --url ldaps://dc1.corp.example:636 --bind-dn 'CN=svc-bulkhead,OU=Service,DC=corp,DC=example' --password-file ad.pass --base-dn DC=corp,DC=example
  bulkhead source add ldap lab --url ldap://10.77.0.89:389 --bind-dn cn=admin,dc=lab,dc=test --password-file pw --base-dn dc=lab,dc=test --interval 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			req.Name = args[0]
			if req.URL == "" {
				return errors.New("--url is required")
			}
			if req.BaseDN == "" {
				return errors.New("--base-dn is required")
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
			src, err := c.CreateDirectorySource(ctx(cmd), req)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(src)
			}
			every := "every " + src.Interval
			if src.Interval == "0s" {
				every = "synced on request"
			}
			fmt.Fprintf(g.stdout, "directory source %s added (%s, %s); sync it now with 'bulkhead source sync %s'\n", src.Name, src.URL, every, src.Name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.URL, "url", "", "the directory: ldap://HOST[:389] or ldaps://HOST[:636]")
	fl.StringVar(&req.BindDN, "bind-dn", "", "DN (or user@domain for Active Directory) to bind as; anonymous when empty")
	fl.StringVar(&passwordFile, "password-file", "", "file holding the bind password (kept out of the process list and shell history)")
	fl.StringVar(&req.BaseDN, "base-dn", "", "where users and groups are searched: dc=corp,dc=example")
	fl.StringVar(&req.UserFilter, "user-filter", "", "LDAP filter of users (default: AD, inetOrgPerson and posixAccount users)")
	fl.StringVar(&req.GroupFilter, "group-filter", "", "LDAP filter of groups (default: AD, groupOfNames, groupOfUniqueNames and posixGroup groups)")
	fl.BoolVar(&req.StartTLS, "start-tls", false, "upgrade an ldap:// connection with StartTLS")
	fl.BoolVar(&req.Insecure, "insecure", false, "do not verify the server's certificate")
	fl.StringVar(&req.Interval, "interval", "", `time between syncs, at least 1m (default 15m; "0" syncs only on request)`)
	return cmd
}

// isDirectorySource tells whether a source is an LDAP one, whose sync and
// delete have their own routes.
func isDirectorySource(cmd *cobra.Command, c *apiclient.Client, name string) (bool, error) {
	srcs, err := c.Sources(ctx(cmd))
	if err != nil {
		return false, err
	}
	for _, s := range srcs {
		if s.Name == name {
			return s.Kind == api.SourceKindLDAP, nil
		}
	}
	return false, nil
}

func (g *globals) printDirectorySync(res api.DirectorySync) error {
	if g.output != "table" {
		return g.printData(res)
	}
	fmt.Fprintf(g.stdout, "directory source %s: %d users, %d groups; users added: %s; removed: %s\n", res.Source, res.Users, res.Groups,
		dash(strings.Join(res.AddedUsers, ",")), dash(strings.Join(res.RemovedUsers, ",")))
	for _, s := range res.Skipped {
		fmt.Fprintf(g.stdout, "  skipped: %s\n", s)
	}
	return nil
}
