package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/policy"
)

const kindHelp = `KIND is one of workload, group, service, contextprofile (profile), policy,
defaultrule, idsprofile, idsvariables (plural and capitalised forms work
too); 'get hosts' lists the agent hosts.`

func decodeObjects(raws []json.RawMessage) ([]policy.Object, error) {
	out := make([]policy.Object, 0, len(raws))
	for _, r := range raws {
		o, err := policy.DecodeObject(r)
		if err != nil {
			return nil, fmt.Errorf("decode manager answer: %w", err)
		}
		out = append(out, o)
	}
	return out, nil
}

// printObjects writes resources as a table, or as YAML documents / a JSON
// list that `bulkhead apply -f` takes back.
func (g *globals) printObjects(kind policy.Kind, objs []policy.Object, single bool) error {
	switch g.output {
	case "json":
		if single && len(objs) == 1 {
			return g.printData(objs[0])
		}
		return g.printData(objs)
	case "yaml":
		for i, o := range objs {
			b, err := policy.Encode(o)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(g.stdout, "---")
			}
			g.stdout.Write(b)
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")) }
	switch kind {
	case policy.KindWorkload:
		row("NAME", "HOST", "INTERFACE", "IPS", "TAGS")
		for _, o := range objs {
			w := o.(*policy.Workload)
			row(w.Metadata.Name, dash(w.Spec.Host), dash(w.Spec.Interface), dash(strings.Join(w.Spec.IPs, ",")), dash(tagString(w.Spec.Tags)))
		}
	case policy.KindGroup:
		row("NAME", "MATCH", "IPS", "GROUPS", "OTHER")
		for _, o := range objs {
			s := o.(*policy.Group).Spec
			var other []string
			if len(s.Users) > 0 {
				other = append(other, "users="+strings.Join(s.Users, ","))
			}
			if len(s.DirectoryGroups) > 0 {
				other = append(other, "directoryGroups="+strings.Join(s.DirectoryGroups, ","))
			}
			if len(s.FQDNs) > 0 {
				other = append(other, "fqdns="+strings.Join(s.FQDNs, ","))
			}
			row(o.GetHeader().Metadata.Name, dash(s.Match), dash(strings.Join(s.IPs, ",")), dash(strings.Join(s.Groups, ",")), dash(strings.Join(other, " ")))
		}
	case policy.KindService:
		row("NAME", "PORTS")
		for _, o := range objs {
			row(o.GetHeader().Metadata.Name, strings.Join(o.(*policy.Service).Spec.Ports, ","))
		}
	case policy.KindContextProfile:
		row("NAME", "APPS", "FQDNS")
		for _, o := range objs {
			s := o.(*policy.ContextProfile).Spec
			var apps []string
			for _, a := range s.Apps {
				v := a.Name
				if a.MinVersion != "" {
					v += ">=" + a.MinVersion
				}
				if a.MaxVersion != "" {
					v += "<=" + a.MaxVersion
				}
				apps = append(apps, v)
			}
			row(o.GetHeader().Metadata.Name, dash(strings.Join(apps, ",")), dash(strings.Join(s.FQDNs, ",")))
		}
	case policy.KindPolicy:
		row("NAME", "CATEGORY", "PRIORITY", "APPLIED-TO", "RULES")
		for _, o := range objs {
			s := o.(*policy.Policy).Spec
			row(o.GetHeader().Metadata.Name, string(s.Category), strconv.Itoa(s.Priority), dash(strings.Join(s.AppliedTo, ",")), strconv.Itoa(len(s.Rules)))
		}
	case policy.KindDefaultRule:
		row("NAME", "ACTION", "LOG")
		for _, o := range objs {
			s := o.(*policy.DefaultRule).Spec
			row(o.GetHeader().Metadata.Name, string(s.Action), strconv.FormatBool(s.Log))
		}
	case policy.KindIDSProfile:
		row("NAME", "MODE", "APPLIED-TO", "SIGNATURES", "WORKLOAD-AWARE")
		for _, o := range objs {
			s := o.(*policy.IDSProfile).Spec
			mode := s.Mode
			if s.PreventAction != "" && s.PreventAction != "asWritten" {
				mode += " (" + s.PreventAction + ")"
			}
			row(o.GetHeader().Metadata.Name, mode, dash(strings.Join(s.AppliedTo, ",")), idsFilterSummary(s.Signatures), strconv.FormatBool(s.IsWorkloadAware()))
		}
	case policy.KindIDSVariables:
		row("NAME", "VARIABLE", "VALUE")
		for _, o := range objs {
			s := o.(*policy.IDSVariables).Spec
			for _, m := range []map[string]string{s.Address, s.Port} {
				for _, k := range sortedKeys(m) {
					row(o.GetHeader().Metadata.Name, "$"+k, m[k])
				}
			}
		}
	}
	return nil
}

// idsFilterSummary is an IDS profile's signature filter in one cell.
func idsFilterSummary(f policy.IDSSignatureFilter) string {
	var parts []string
	if f.MaxSeverity > 0 {
		parts = append(parts, "severity<="+strconv.Itoa(f.MaxSeverity))
	}
	if len(f.Classtypes) > 0 {
		parts = append(parts, "classtype="+strings.Join(f.Classtypes, "|"))
	}
	if len(f.ExcludeClasstypes) > 0 {
		parts = append(parts, "classtype!="+strings.Join(f.ExcludeClasstypes, "|"))
	}
	for _, k := range sortedKeys(f.Metadata) {
		parts = append(parts, k+"="+strings.Join(f.Metadata[k], "|"))
	}
	if len(f.CVEs) > 0 {
		parts = append(parts, "cve="+strings.Join(f.CVEs, "|"))
	}
	if n := len(f.SIDs); n > 0 {
		parts = append(parts, "+"+strconv.Itoa(n)+" sids")
	}
	if n := len(f.ExcludeSIDs); n > 0 {
		parts = append(parts, "-"+strconv.Itoa(n)+" sids")
	}
	if len(f.SignatureSets) > 0 {
		parts = append(parts, "sets="+strings.Join(f.SignatureSets, ","))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tagString(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, ",")
}

func newGetCmd(g *globals) *cobra.Command {
	var rev int64
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List resources of a kind, or show one",
		Long:  "List resources of a kind at the latest (or --revision) revision.\n" + kindHelp,
		Example: `  bulkhead get groups
  bulkhead get policy shop -o yaml
  bulkhead get workloads -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if isHostKind(args[0]) {
				return g.getHosts(cmd, args[1:])
			}
			kind, err := api.ParseKind(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var raws []json.RawMessage
			if len(args) == 2 {
				raw, err := c.Get(ctx(cmd), kind, args[1], rev)
				if err != nil {
					return err
				}
				raws = []json.RawMessage{raw}
			} else if raws, err = c.List(ctx(cmd), kind, rev); err != nil {
				return err
			}
			objs, err := decodeObjects(raws)
			if err != nil {
				return err
			}
			return g.printObjects(kind, objs, len(args) == 2)
		},
	}
	cmd.Flags().Int64Var(&rev, "revision", 0, "revision to read (default: latest)")
	return cmd
}

func newDescribeCmd(g *globals) *cobra.Command {
	var rev int64
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one resource in full, with rule ids for policies",
		Long:  "Show one resource in full.\n" + kindHelp,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := api.ParseKind(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			raw, err := c.Get(ctx(cmd), kind, args[1], rev)
			if err != nil {
				return err
			}
			obj, err := policy.DecodeObject(raw)
			if err != nil {
				return err
			}
			if g.output == "json" {
				// The resource as the API has it; the extras below are
				// for people.
				return g.printData(obj)
			}
			b, err := policy.Encode(obj)
			if err != nil {
				return err
			}
			g.stdout.Write(b)
			if wl, ok := obj.(*policy.Workload); ok {
				return describeFacts(ctx(cmd), g, c, wl.Metadata.Name) // source.go
			}
			p, ok := obj.(*policy.Policy)
			if !ok {
				return nil
			}
			n := rev
			if n == 0 {
				revs, err := c.Revisions(ctx(cmd), 1)
				if err != nil || len(revs) == 0 {
					return err
				}
				n = revs[0].Number
			}
			detail, err := c.Revision(ctx(cmd), n)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "\nRules (revision %d, category %s, priority %d):\n", detail.Number, p.Spec.Category, p.Spec.Priority)
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  #\tID\tNAME\tACTION\tMODE\tSOURCES\tDESTINATIONS\tSERVICES\tPROFILES")
			for i, r := range p.Spec.Rules {
				mode := string(r.Mode)
				if mode == "" {
					mode = string(policy.ModeEnforce)
				}
				fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, detail.Set.RuleIDs[policy.RuleKey(p.Metadata.Name, r.Name)],
					r.Name, r.Action, mode, anyOf(r.Sources), anyOf(r.Destinations), anyOf(r.Services), dash(strings.Join(r.Profiles, ",")))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().Int64Var(&rev, "revision", 0, "revision to read (default: latest)")
	return cmd
}

func anyOf(s []string) string {
	if len(s) == 0 {
		return "any"
	}
	return strings.Join(s, ",")
}

func newDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete a resource (a new revision for policy kinds)",
		Long:  "Delete a resource. A group still referenced by a rule cannot be deleted.\n" + kindHelp,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := api.ParseKind(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Delete(ctx(cmd), kind, args[1])
			if err != nil {
				return serverError(err)
			}
			if g.output != "table" {
				return g.printData(resp)
			}
			fmt.Fprintf(g.stdout, "%s/%s deleted (revision %d)\n", kind, args[1], resp.Revision)
			return nil
		},
	}
}
