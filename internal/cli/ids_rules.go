package cli

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

// idsRulesetCmds are `bulkhead ids import|rulesets|rules`: signature sets
// and which signatures inspect a workload.
func idsRulesetCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newIDSImportCmd(g), newIDSRulesetsCmd(g), newIDSRulesCmd(g)}
}

// setNameOf names a signature set after its file: the base name without
// .gz and .rules.
func setNameOf(path string) string {
	n := filepath.Base(path)
	n = strings.TrimSuffix(n, ".gz")
	n = strings.TrimSuffix(n, ".rules")
	return strings.ToLower(n)
}

func newIDSImportCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import FILE.rules",
		Short: "Import a rule file (Suricata language) as a new version of a signature set",
		Long: `Import signatures written in the Suricata/Snort rule language (a .rules
file, or .rules.gz) as the next version of a signature set. The set is named
after the file (without .rules and .gz) unless --name says otherwise.

The manager parses the file with the current IDS variables and keeps every
rule it can honour; a rule that uses something unsupported is listed with its
line, sid and reason, and the rest load. The command fails only when no rule
loads. IDSProfiles choose among the imported signatures; agents get the new
version with their next desired state.`,
		Example: `  bulkhead ids import emerging-all.rules.gz --name et-open
  bulkhead ids import local.rules`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if name == "" {
				name = setNameOf(args[0])
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.ImportSignatureSet(ctx(cmd), name, f, strings.HasSuffix(args[0], ".gz"))
			if err != nil {
				var ae *apiclient.Error
				if errors.As(err, &ae) && len(ae.Body.Details) > 0 {
					var b strings.Builder
					for _, d := range ae.Body.Details {
						fmt.Fprintf(&b, "\n  %s:%s: %s", args[0], strings.TrimPrefix(d.Field, "line "), d.Reason)
					}
					return fmt.Errorf("import %s: %w%s", args[0], err, b.String())
				}
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			return printSignatureSet(g, res, args[0])
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "signature set name (default: the file's base name without .rules/.gz)")
	return cmd
}

// printSignatureSet writes what a set's import loaded and the rules that did
// not, as FILE:LINE: sid N: reason (file is the imported file or the set).
func printSignatureSet(g *globals, res api.IDSImportResult, file string) error {
	if g.output != "table" {
		return g.printData(res)
	}
	fmt.Fprintf(g.stdout, "signature set %s version %d: %d rules loaded, %d not loaded\n", res.Name, res.Version, res.Loaded, len(res.Problems))
	if len(res.ByKeyword) > 0 {
		kws := slices.SortedFunc(maps.Keys(res.ByKeyword), func(a, b string) int {
			return cmp.Or(cmp.Compare(res.ByKeyword[b], res.ByKeyword[a]), cmp.Compare(a, b))
		})
		var top []string
		for i, k := range kws {
			if i == 10 {
				top = append(top, fmt.Sprintf("... %d more", len(kws)-i))
				break
			}
			top = append(top, fmt.Sprintf("%s (%d)", k, res.ByKeyword[k]))
		}
		fmt.Fprintf(g.stdout, "unsupported keywords: %s\n", strings.Join(top, ", "))
	}
	for i, p := range res.Problems {
		if i == 10 {
			fmt.Fprintf(g.stdout, "  ... and %d more (-o yaml lists them all)\n", len(res.Problems)-i)
			break
		}
		sid := ""
		if p.SID != 0 {
			sid = fmt.Sprintf(" sid %d:", p.SID)
		}
		fmt.Fprintf(g.stdout, "  %s:%d:%s %s\n", file, p.Line, sid, p.Reason)
	}
	return nil
}

func newIDSRulesetsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rulesets [NAME]",
		Aliases: []string{"signature-sets"},
		Short:   "List the imported signature sets, or show one with every rule that did not load",
		Example: `  bulkhead ids rulesets
  bulkhead ids rulesets et-open          # what loaded, and each rule that did not, with its reason
  bulkhead ids rulesets et-open -o yaml  # every problem`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				res, err := c.SignatureSet(ctx(cmd), args[0])
				if err != nil {
					return err
				}
				return printSignatureSet(g, res, args[0])
			}
			sets, err := c.SignatureSets(ctx(cmd))
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(sets)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tRULES\tNOT-LOADED\tSHADOWED\tIMPORTED\tBY")
			for _, s := range sets {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Version, s.Rules, s.Problems, s.Shadowed,
					s.Created.Local().Format("2006-01-02 15:04"), s.Author)
			}
			return tw.Flush()
		},
	}
}

func newIDSRulesCmd(g *globals) *cobra.Command {
	var q apiclient.SignatureQuery
	var sid uint
	cmd := &cobra.Command{
		Use:   "rules [--workload W] [--sid N] [--set NAME]",
		Short: "Signatures, or those inspecting a workload and why others are left out",
		Long: `Without --workload, list the imported signatures (of one set with --set, one
signature with its text with --sid).

With --workload, show what inspects that workload: the IDSProfiles that apply,
the mode (prevent when a prevent profile applies), each signature with the
profiles that chose it and what a match does (ENFORCED: "drop (blocks)" or
"reject (blocks)" for a drop/reject signature of a prevent profile, or an
alert signature of a prevent profile with preventAction drop/reject; else
"alert only"), what the manager
knows of the workload (OS, roles, served ports), and the signatures the
workload-aware step left out with the reason. With --sid too, say what each
profile decided about that signature.`,
		Example: `  bulkhead ids rules --workload db-1
  bulkhead ids rules --workload web-1 --sid 2024897
  bulkhead ids rules --set et-open`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if sid > 1<<32-1 {
				return fmt.Errorf("--sid %d: not a signature id", sid)
			}
			q.SID = uint32(sid)
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Signatures(ctx(cmd), q)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(res)
			}
			w := g.stdout
			if res.Workload != "" {
				mode := cmp.Or(res.Mode, "not inspected (no IDSProfile applies)")
				fmt.Fprintf(w, "workload %s on host %s (%s): %s", res.Workload, cmp.Or(res.Host, "-"), cmp.Or(res.Interface, "-"), mode)
				if len(res.Profiles) > 0 {
					fmt.Fprintf(w, ", profiles %s", strings.Join(res.Profiles, ", "))
				}
				fmt.Fprintln(w)
				if f := res.Facts; f != nil {
					roles := "unknown (nothing is left out by role)"
					if f.RolesKnown {
						roles = strings.Join(f.Roles, ",") + " from " + f.RolesFrom
					}
					fmt.Fprintf(w, "known: os %s; roles %s\n", cmp.Or(f.OS, "unknown"), roles)
				}
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			if res.Workload != "" {
				fmt.Fprintln(tw, "SID\tACTION\tENFORCED\tPRIORITY\tPROFILES\tMSG")
				for _, s := range res.Signatures {
					enforced := "alert only"
					switch {
					case s.Enforced != "":
						enforced = s.Enforced + " (blocks)"
					case s.Action == "pass":
						enforced = "-"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", s.SID, s.Action, enforced, s.Priority, strings.Join(s.Profiles, ","), s.Msg)
				}
			} else {
				fmt.Fprintln(tw, "SID\tSET\tACTION\tPROTO\tPRIORITY\tCLASSTYPE\tMSG")
				for _, s := range res.Signatures {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", s.SID, s.Set, s.Action, s.Proto, s.Priority, dash(s.Classtype), s.Msg)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(res.LeftOut) > 0 {
				fmt.Fprintf(w, "left out by the workload-aware step (%d):\n", len(res.LeftOut))
				for i, l := range res.LeftOut {
					if i == 50 && q.SID == 0 {
						fmt.Fprintf(w, "  ... and %d more (-o yaml lists them all)\n", len(res.LeftOut)-i)
						break
					}
					fmt.Fprintf(w, "  %d (%s) by %s: %s\n", l.SID, l.Msg, l.Profile, l.Reason)
				}
			}
			for _, why := range res.Why {
				fmt.Fprintf(w, "  %s\n", why)
			}
			if q.SID != 0 && len(res.Signatures) == 1 && res.Signatures[0].Rule != "" {
				fmt.Fprintf(w, "%s\n", res.Signatures[0].Rule)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&q.Workload, "workload", "", "the workload whose signatures to show")
	cmd.Flags().UintVar(&sid, "sid", 0, "one signature")
	cmd.Flags().StringVar(&q.Set, "set", "", "only signatures of this set")
	return cmd
}
