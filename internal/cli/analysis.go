package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// edgeServices is how many services an edge's table row names.
const edgeServices = 3

func newMapCmd(g *globals) *cobra.Command {
	var q apiclient.AnalysisQuery
	cmd := &cobra.Command{
		Use:   "map [--level env|app|tier|workload] [--since 24h]",
		Short: "The application map: who talks to whom, at env, app, tier or workload level",
		Long: `Show the traffic between nodes of the hierarchy env -> app -> tier -> workload,
placed by the workloads' tags. Workloads without an app or tier tag are placed
where discovery proposes (marked *); addresses that are no workload are
external: their address at the workload level, their range above it
(external:private, external:internet, ...).

Each edge is the connections from one node's clients to another's servers
(the same node for traffic inside it): connections, blocked attempts, bytes
both ways, the busiest services, and when it was first and last seen. -o json
gives every field, compliance counts included.`,
		Example: `  bulkhead map --level app --since 24h
  bulkhead map --level workload --scope 'app == "shop"'
  bulkhead map --level tier --since 2026-03-01T00:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			m, err := c.Map(ctx(cmd), q)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(m)
			}
			printMap(g.stdout, m)
			return nil
		},
	}
	addAnalysisFlags(cmd, &q, "24h")
	cmd.Flags().StringVar(&q.Scope, "scope", "", `only edges with an end whose tags satisfy this expression, e.g. 'app == "shop"'`)
	return cmd
}

func addAnalysisFlags(cmd *cobra.Command, q *apiclient.AnalysisQuery, since string) {
	fl := cmd.Flags()
	fl.StringVar(&q.Level, "level", "app", "env, app, tier or workload")
	fl.StringVar(&q.Since, "since", since, `flows seen after this time (RFC 3339) or this long ago (10m, 24h, 7d); "" for all stored`)
	fl.StringVar(&q.Until, "until", "", "flows started before this time (RFC 3339) or this long ago")
}

// windowText says which flows an answer covers.
func windowText(w api.Window) string {
	switch {
	case w.Since.IsZero() && w.Until.IsZero():
		return "all stored flows"
	case w.Until.IsZero():
		return "flows since " + w.Since.Local().Format(time.DateTime)
	case w.Since.IsZero():
		return "flows until " + w.Until.Local().Format(time.DateTime)
	}
	return fmt.Sprintf("flows from %s to %s", w.Since.Local().Format(time.DateTime), w.Until.Local().Format(time.DateTime))
}

func seen(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func servicesColumn(e api.MapEdge) string {
	var parts []string
	for i, s := range e.Services {
		if i == edgeServices {
			break
		}
		parts = append(parts, fmt.Sprintf("%s(%d)", s.Service, s.Connections+s.Drops))
	}
	if more := len(e.Services) - len(parts) + e.MoreServices; more > 0 {
		parts = append(parts, fmt.Sprintf("+%d", more))
	}
	return dash(strings.Join(parts, " "))
}

func printMap(w io.Writer, m api.MapResponse) {
	scope := ""
	if m.Scope != "" {
		scope = ", scope " + m.Scope
	}
	fmt.Fprintf(w, "%s level, %s%s: %d nodes, %d edges, %d connections, %d blocked attempts, %d IDS alerts\n\n",
		m.Level, windowText(m.Window), scope, len(m.Nodes), len(m.Edges), m.Total.Connections, m.Total.Drops, m.Alerts)
	if len(m.Edges) == 0 {
		fmt.Fprintln(w, "no flows")
		return
	}
	proposed := map[string]bool{}
	for _, n := range m.Nodes {
		if n.Proposed > 0 {
			proposed[n.ID] = true
		}
	}
	name := func(id string) string {
		if proposed[id] {
			return id + "*"
		}
		return id
	}
	withUsers := slices.ContainsFunc(m.Edges, func(e api.MapEdge) bool { return len(e.Users) > 0 })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "FROM\tTO\tCONNECTIONS\tBLOCKED\tALERTS\tSENT\tRECEIVED\tSERVICES\tFIRST SEEN\tLAST SEEN")
	if withUsers {
		fmt.Fprint(tw, "\tUSERS")
	}
	fmt.Fprintln(tw)
	for _, e := range m.Edges {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s", name(e.From), name(e.To), e.Connections, e.Drops, e.Alerts,
			humanBytes(e.BytesSent), humanBytes(e.BytesReceived), servicesColumn(e), seen(e.FirstSeen), seen(e.LastSeen))
		if withUsers {
			var us []string
			for _, u := range e.Users {
				us = append(us, fmt.Sprintf("%s(%d)", u.User, u.Connections))
			}
			fmt.Fprintf(tw, "\t%s", dash(strings.Join(us, " ")))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tMEMBERS\tPROPOSED\tCONNECTIONS\tBLOCKED\tALERTS\tBYTES\n", strings.ToUpper(m.Level))
	for _, n := range m.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", name(n.ID), n.Members, n.Proposed, n.Traffic.Connections, n.Traffic.Drops, n.Alerts,
			humanBytes(n.Traffic.BytesSent+n.Traffic.BytesReceived))
	}
	tw.Flush()
	if len(proposed) > 0 {
		fmt.Fprintln(w, "\n* holds untagged workloads placed by discovery")
	}
}

func newComplianceCmd(g *globals) *cobra.Command {
	var q apiclient.AnalysisQuery
	cmd := &cobra.Command{
		Use:   "compliance [--level app] [--since 24h] [--revision N]",
		Short: "Flow compliance: what the policy protects (green), leaves to the default (amber), blocks (red)",
		Long: `Classify every flow of the window against the published policy (or --revision N)
and sum the classes per node (per application at the app level) and per edge:

  green   allowed by a specific rule
  amber   allowed only by the default rule, or by no rule at all (neither end
          is a workload): unprotected
  red     blocked by the policy now, or dropped by a host (drop records)
  dashed  allowed now, but a staged rule would block it once enforced

A flow allowed by the default rule that a staged rule would block is dashed.`,
		Example: `  bulkhead compliance
  bulkhead compliance --level tier --since 7d
  bulkhead compliance --revision 12 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Compliance(ctx(cmd), q)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(res)
			}
			printCompliance(g.stdout, res)
			return nil
		},
	}
	addAnalysisFlags(cmd, &q, "24h")
	cmd.Flags().Int64Var(&q.Revision, "revision", 0, "check against this revision (default: the latest)")
	return cmd
}

// share renders "13 (59%)".
func share(n, total uint64) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.0f%%)", n, 100*float64(n)/float64(total))
}

func countColumns(c api.ComplianceCounts) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%d", share(c.Green, c.Total), share(c.Amber, c.Total), share(c.Red, c.Total),
		share(c.Dashed, c.Total), c.Total)
}

func printCompliance(w io.Writer, res api.ComplianceResponse) {
	fmt.Fprintf(w, "compliance of %s against revision %d, %s level\n\n", windowText(res.Window), res.Revision, res.Level)
	if res.Total.Total == 0 {
		fmt.Fprintln(w, "no flows")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tGREEN\tAMBER\tRED\tDASHED\tFLOWS\n", strings.ToUpper(res.Level))
	for _, n := range res.Nodes {
		id := n.Node
		if n.Proposed > 0 {
			id += "*"
		}
		fmt.Fprintf(tw, "%s\t%s\n", id, countColumns(n.Counts))
	}
	fmt.Fprintf(tw, "TOTAL\t%s\n", countColumns(res.Total))
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tGREEN\tAMBER\tRED\tDASHED\tFLOWS")
	for _, e := range res.Edges {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.From, e.To, countColumns(e.Counts))
	}
	tw.Flush()
}

func newWhatIfCmd(g *globals) *cobra.Command {
	var files []string
	var req api.WhatIfRequest
	cmd := &cobra.Command{
		Use:   "whatif -f DRAFT|--revision N [--since 7d]",
		Short: "Replay stored flows against a draft or a revision: what it would drop or newly allow",
		Long: `Replay the flow history against a draft (YAML documents merged into the
published policy, as apply would, but nothing is written) or against any
revision, and compare each flow's verdict with the published policy's.
Flows the candidate would block are listed first ("would have dropped"),
then those it would newly allow, each with the rule that decides it before
and after. A rule only the draft has shows id 0 until it is applied.`,
		Example: `  bulkhead whatif -f draft.yaml
  bulkhead whatif -f policies/ --since 24h --limit 50
  bulkhead whatif --revision 7 --level tier -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if (len(files) > 0) == (req.Revision != 0) {
				return errors.New("whatif: pass -f DRAFT or --revision N (one of them)")
			}
			if req.Revision < 0 {
				return fmt.Errorf("--revision %d: not a revision number", req.Revision)
			}
			var docs []policy.Document
			if len(files) > 0 {
				var err error
				if docs, err = readDocuments(files, g.stdin); err != nil {
					return err
				}
				if req.Documents, err = wireDocuments(docs); err != nil {
					return err
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.WhatIf(ctx(cmd), req)
			if err != nil {
				return serverError(err, docs...)
			}
			if g.output != "table" {
				return g.printData(res)
			}
			printWhatIf(g.stdout, res)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVarP(&files, "filename", "f", nil, "draft: file, directory or - for stdin (repeatable)")
	fl.Int64Var(&req.Revision, "revision", 0, "replay against this revision instead of a draft")
	fl.StringVar(&req.Since, "since", "7d", `flows seen after this time (RFC 3339) or this long ago; "" for all stored`)
	fl.StringVar(&req.Until, "until", "", "flows started before this time (RFC 3339) or this long ago")
	fl.StringVar(&req.Level, "level", "app", "level of the edges summed: env, app, tier or workload")
	fl.IntVar(&req.Limit, "limit", 20, "at most this many example flows")
	return cmd
}

func outcomeText(o api.WhatIfOutcome) string {
	id := "new"
	if o.RuleID != 0 {
		id = strconv.FormatUint(uint64(o.RuleID), 10)
	}
	if o.Rule == "" {
		return o.Verdict + " (no rule: not enforced)"
	}
	return fmt.Sprintf("%s by %s (%s)", o.Verdict, o.Rule, id)
}

func exampleEnd(workload, addr string) string {
	if workload != "" {
		return workload + " " + addr
	}
	return addr
}

func printWhatIf(w io.Writer, res api.WhatIfResponse) {
	subject := "this draft"
	if res.Candidate != "draft" {
		subject = res.Candidate
	}
	fmt.Fprintf(w, "%s would have dropped %d flows and newly allowed %d, of %d replayed (%s, compared with revision %d)",
		subject, res.WouldDrop, res.WouldAllow, res.Records, windowText(res.Window), res.Baseline)
	if len(res.Examples) == 0 {
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintln(w, ":")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WOULD\tSOURCE\tDESTINATION\tSERVICE\tFLOWS\tNOW\tTHEN\tLAST SEEN")
	for _, x := range res.Examples {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", x.Change, exampleEnd(x.SrcWorkload, x.Src), exampleEnd(x.DstWorkload, x.Dst),
			x.Service, x.Flows, outcomeText(x.Before), outcomeText(x.After), seen(x.LastSeen))
	}
	tw.Flush()
	if more := res.Changed - len(res.Examples); more > 0 {
		fmt.Fprintf(w, "... and %d more distinct flows (--limit)\n", more)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "FROM (%s)\tTO\tWOULD DROP\tWOULD ALLOW\n", res.Level)
	for _, e := range res.Edges {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", e.From, e.To, e.WouldDrop, e.WouldAllow)
	}
	tw.Flush()
}
