package cli

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/policy"
)

func newRecommendCmd(g *globals) *cobra.Command {
	var req api.RecommendRequest
	cmd := &cobra.Command{
		Use:   "recommend --scope EXPR",
		Short: "Recommend a zero-trust policy for a scope from the observed flows",
		Long: `Draft a policy for the workloads of a scope from the flows of a window: a
group per application tier (reusing an existing group with the same members),
services from the observed ports (dense ports become ranges), an allow rule per
observed pair of tiers, applications and outside addresses, and a drop closing
the scope. Each rule's description carries its evidence.

The draft is printed as YAML documents that 'bulkhead apply -f' takes, followed
by a summary in comments. Run it again later: when the latest revision holds the
recommended policy (by name), only the changes are proposed: rules for new
flows, and rules whose flows were no longer seen (stale; removed with --prune).

--scope takes a tag expression (app == "shop") or the short form app=shop
(app=shop,tier=web for several tags). all() is the whole data center.`,
		Example: `  bulkhead recommend --scope app=shop --since 7d > shop-draft.yaml
  bulkhead recommend --scope 'app == "shop" && env == "prod"' --apply --staged
  bulkhead recommend --scope app=shop --apply --prune -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if req.Staged && !req.Apply {
				return errors.New("--staged: only with --apply")
			}
			scope, err := scopeExpr(req.Scope)
			if err != nil {
				return err
			}
			req.Scope = scope
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Recommend(ctx(cmd), req)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printData(resp)
			}
			return g.printRecommendation(req, resp)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Scope, "scope", "", `workloads to protect: a tag expression or key=value[,key=value] (required)`)
	fl.StringVar(&req.Since, "since", "", "window start: RFC 3339 or this long ago (7d, 12h); default 7d")
	fl.StringVar(&req.Until, "until", "", "window end: RFC 3339 or this long ago; default now")
	fl.StringVar(&req.Options.Name, "name", "", `name of the policy (default "recommended-" and the scope)`)
	fl.BoolVar(&req.Apply, "apply", false, "publish the draft as a new revision")
	fl.BoolVar(&req.Staged, "staged", false, "with --apply: the rules added are staged (counted, not enforced)")
	fl.BoolVar(&req.Prune, "prune", false, "remove rules of an earlier recommendation whose flows were not seen in the window")
	cmd.MarkFlagRequired("scope")
	return cmd
}

var shortTag = regexp.MustCompile(`^([A-Za-z0-9_.\-/]+)=([^=,"'\s()]+)$`)

// scopeExpr turns the short form key=value[,key=value] into a tag
// expression; anything else is passed on as one.
func scopeExpr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New(`--scope: want a tag expression (app == "shop") or key=value`)
	}
	if strings.Contains(s, "==") {
		return s, nil
	}
	parts := strings.Split(s, ",")
	var terms []string
	for _, p := range parts {
		m := shortTag.FindStringSubmatch(strings.TrimSpace(p))
		if m == nil {
			return s, nil
		}
		terms = append(terms, m[1]+" == "+strconv.Quote(m[2]))
	}
	return strings.Join(terms, " && "), nil
}

// printRecommendation writes the draft as YAML documents, then what it
// changes and its evidence as comments, so the output can be applied.
func (g *globals) printRecommendation(req api.RecommendRequest, resp api.RecommendResponse) error {
	var objs []policy.Object
	for i, d := range resp.Documents {
		o, err := policy.DecodeObject(d.Object)
		if err != nil {
			return fmt.Errorf("recommendation document %d: %w", i+1, err)
		}
		objs = append(objs, o)
	}
	y, err := policy.EncodeObjects(objs)
	if err != nil {
		return err
	}
	w := g.stdout
	fmt.Fprintf(w, "# Recommendation for %s from %d records (%d connections), %s to %s.\n",
		req.Scope, resp.Records, resp.Connections, resp.Since.UTC().Format(time.RFC3339), resp.Until.UTC().Format(time.RFC3339))
	if _, err := w.Write(y); err != nil {
		return err
	}
	ch := resp.Changes
	list := func(what string, names []string) {
		if len(names) > 0 {
			fmt.Fprintf(w, "# %s (%d): %s\n", what, len(names), strings.Join(names, ", "))
		}
	}
	if ch.Incremental {
		fmt.Fprintf(w, "# Changes to the existing policy: %d added, %d unchanged, %d stale, %d removed, %d staged rules enforced.\n",
			len(ch.Added), len(ch.Unchanged), len(ch.Stale), len(ch.Removed), len(ch.Promoted))
	} else {
		fmt.Fprintf(w, "# New policy: %d rules.\n", len(ch.Added))
	}
	list("added", ch.Added)
	list("unchanged", ch.Unchanged)
	list("stale: no flow in the window; --prune removes them", ch.Stale)
	list("removed", ch.Removed)
	list("enforced (were staged)", ch.Promoted)
	if resp.Refused > 0 {
		fmt.Fprintf(w, "# %d TCP connections were refused or never answered: no rule for them.\n", resp.Refused)
	}
	for _, sc := range resp.Scanners {
		who := sc.Address
		if sc.Workload != "" {
			who = sc.Workload + " (" + sc.Address + ")"
		}
		fmt.Fprintf(w, "# left out, a scanner: %s tried %d targets that did not answer (%d hosts, %d ports); none of its %d connections got a rule.\n",
			who, sc.Failed, sc.Targets, sc.Ports, sc.Connections)
		for _, x := range sc.Examples {
			fmt.Fprintf(w, "#   %s\n", x)
		}
	}
	if len(resp.Reused) > 0 {
		fmt.Fprintf(w, "# reused: %s\n", strings.Join(resp.Reused, ", "))
	}
	for _, name := range append(append([]string{}, ch.Added...), ch.Unchanged...) {
		ev, ok := resp.Evidence[name]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "# evidence %s: %d flows, %s", name, ev.Flows, humanBytes(ev.Bytes))
		if !ev.FirstSeen.IsZero() {
			fmt.Fprintf(w, ", %s to %s", ev.FirstSeen.UTC().Format(time.RFC3339), ev.LastSeen.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		for _, x := range ev.Examples {
			fmt.Fprintf(w, "#   %s\n", x)
		}
	}
	if req.Apply {
		if len(resp.Applied) == 0 {
			fmt.Fprintf(w, "# no change (revision %d)\n", resp.Revision)
		} else {
			fmt.Fprintf(w, "# revision %d published", resp.Revision)
			if req.Staged {
				fmt.Fprint(w, " (added rules staged)")
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

func newDiscoverCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "discover",
		Short: "Discover applications from the flows",
	}
	cmd.AddCommand(newDiscoverAppsCmd(g))
	return cmd
}

func newDiscoverAppsCmd(g *globals) *cobra.Command {
	var since string
	var accept bool
	cmd := &cobra.Command{
		Use:   "apps [--accept [WORKLOAD...]]",
		Short: "Propose app and tier tags for workloads without them",
		Long: `Cluster the flow graph into application communities and read each workload's
tier from the ports it serves, then propose app, tier (and env) tags for the
workloads that have no app or tier tag, with the evidence.

--accept writes the proposed tags into the inventory: of the named workloads,
or of all proposals when none is named. Only tags a workload lacks are written,
and only on workloads without an app or tier tag: an operator's tags win.`,
		Example: `  bulkhead discover apps --since 7d
  bulkhead discover apps --accept vm-0042 vm-0043
  bulkhead discover apps --accept`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if len(args) > 0 && !accept {
				return errors.New("workload names are taken only with --accept")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if !accept {
				ps, err := c.DiscoverApps(ctx(cmd), since)
				if err != nil {
					return err
				}
				if g.output != "table" {
					return g.printData(ps)
				}
				return g.printProposals(ps)
			}
			resp, err := c.AcceptApps(ctx(cmd), api.AcceptAppsRequest{Workloads: args, All: len(args) == 0, Since: since})
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(resp)
			}
			if err := g.printProposals(resp.Accepted); err != nil {
				return err
			}
			for _, s := range resp.Skipped {
				fmt.Fprintf(g.stdout, "skipped %s: %s\n", s.Workload, s.Reason)
			}
			fmt.Fprintf(g.stdout, "tags written on %d workload(s)\n", len(resp.Accepted))
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "window start: RFC 3339 or this long ago (7d, 12h); default 7d")
	cmd.Flags().BoolVar(&accept, "accept", false, "write the proposed tags into the inventory")
	return cmd
}

func (g *globals) printProposals(ps []api.AppProposal) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tAPP\tTIER\tENV\tCONFIDENCE\tEVIDENCE")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s; %s\n", p.Workload,
			dash(p.Tags["app"]), dash(p.Tags["tier"]), dash(p.Tags["env"]), p.Confidence, p.TierFrom, p.AppFrom)
	}
	return tw.Flush()
}
