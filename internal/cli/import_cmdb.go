package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/inventory/cmdb"
)

func newImportCMDBCmd(g *globals) *cobra.Command {
	var (
		format, mapping, source string
		replace, dryRun         bool
	)
	cmd := &cobra.Command{
		Use:   "cmdb FILE",
		Short: "Import a CMDB export (CSV or JSON) into the inventory",
		Long: `Import a CMDB export into the inventory. Each row becomes a fact of the
source (default "cmdb"); the manager merges the facts of every source into
workloads and says which fact it used where sources disagree.

A ServiceNow cmdb_ci_server export works as is: CSV with columns name,
ip_address, sys_id, sys_updated_on, owned_by, os, location, u_application,
u_environment, u_tier, or JSON as the Table API ({"result": [...]}) or the
JSONv2 export ({"records": [...]}) writes it, with plain values or
{"display_value", "value"} objects. Other columns are mapped with --map
FIELD=COLUMN, where FIELD is name, ip (one or more addresses separated by
commas, semicolons or spaces), key (the row's identity), updated (when the
row changed: "2006-01-02 15:04:05" UTC, RFC 3339 or a date), tag.KEY, or
any other attribute (owner, os, ...); FIELD= drops a default.

Rows that cannot be used (no name, a bad address or date, a wrong number of
columns, a duplicate key) are listed with their line and left out; the good
rows are imported. The command then exits non-zero, so that scripts notice.
FILE "-" reads standard input.`,
		Example: `  bulkhead import cmdb servers.csv
  bulkhead import cmdb export.json --source snow --dry-run
  bulkhead import cmdb hosts.csv --map name=u_hostname,ip=ip_address,tag.app=u_application,owner=owned_by`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			req := api.CMDBImportRequest{Format: strings.ToLower(format), Source: source, Replace: replace, DryRun: dryRun}
			switch req.Format {
			case "", "csv", "json":
			default:
				return fmt.Errorf("--format %q: want csv or json", format)
			}
			if mapping != "" {
				m, err := cmdb.ParseMapping(mapping)
				if err != nil {
					return fmt.Errorf("--map: %w", err)
				}
				req.Mapping = m
			}
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(g.stdin)
				req.File = "stdin"
			} else {
				data, err = os.ReadFile(args[0])
				req.File = filepath.Base(args[0])
				if req.Format == "" {
					switch strings.ToLower(filepath.Ext(args[0])) {
					case ".csv":
						req.Format = "csv"
					case ".json":
						req.Format = "json"
					}
				}
			}
			if err != nil {
				return err
			}
			req.Content = string(data)
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.ImportCMDB(ctx(cmd), req)
			if err != nil {
				return err
			}
			if err := g.printInventoryResult(res, req.File); err != nil {
				return err
			}
			if len(res.Bad) > 0 {
				return fmt.Errorf("%d of %d rows were bad and left out; the other rows were imported", len(res.Bad), res.Rows)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&format, "format", "", "csv or json (default: from the file name, else from the content)")
	fl.StringVar(&mapping, "map", "", "column mapping FIELD=COLUMN,... over the ServiceNow defaults")
	fl.StringVar(&source, "source", "", `name of the source the rows belong to (default "cmdb")`)
	fl.BoolVar(&replace, "replace", false, "the file is the complete export: drop the source's rows it does not have")
	fl.BoolVar(&dryRun, "dry-run", false, "show what would change without changing anything")
	return cmd
}

// printInventoryResult shows what an import, sync or source removal did.
func (g *globals) printInventoryResult(res api.InventoryResult, file string) error {
	if g.output != "table" {
		return g.printData(res)
	}
	w := g.stdout
	dry := ""
	if res.DryRun {
		dry = " (dry run: nothing was changed)"
	}
	fmt.Fprintf(w, "source %s: %d rows, %d bad%s\n", res.Source, res.Rows, len(res.Bad), dry)
	fmt.Fprintf(w, "records: %d new, %d changed, %d unchanged, %d removed\n", res.NewRecords, res.ChangedRecords, res.UnchangedRecords, res.RemovedRecords)
	fmt.Fprintf(w, "workloads: %d created, %d updated, %d deleted\n", len(res.Created), len(res.Updated), len(res.Deleted))
	for _, l := range []struct {
		verb  string
		names []string
	}{{"created", res.Created}, {"updated", res.Updated}, {"deleted", res.Deleted}} {
		for _, n := range l.names {
			fmt.Fprintf(w, "  Workload/%s %s\n", n, l.verb)
		}
	}
	if len(res.Bad) > 0 {
		fmt.Fprintln(w, "bad rows (left out):")
		for _, b := range res.Bad {
			where := fmt.Sprintf("%s:%d", file, b.Line)
			if b.Record > 0 {
				where += fmt.Sprintf(" (record %d)", b.Record)
			}
			fmt.Fprintf(w, "  %s: %s\n", where, b.Reason)
		}
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "skipped: %s\n", s)
	}
	if len(res.Conflicts) > 0 {
		fmt.Fprintf(w, "conflicts (%d):\n", len(res.Conflicts))
		return g.printConflicts(res.Conflicts, "  ")
	}
	return nil
}

// printConflicts shows each disputed attribute with every claim, the used
// one first.
func (g *globals) printConflicts(cs []api.Conflict, indent string) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	for _, c := range cs {
		fmt.Fprintf(tw, "%s%s\n", indent, c.Subject)
		for _, f := range c.Claims {
			fmt.Fprintf(tw, "%s  %s\t%s\t%s\t%s\t%s\t%s\n", indent, usedMark(f.Used), f.Workload, f.Value, sourceOf(f), ageOf(f), f.Reason)
		}
	}
	return tw.Flush()
}

func usedMark(used bool) string {
	if used {
		return "used"
	}
	return "not used"
}

// sourceOf renders "vc1 (vcenter)".
func sourceOf(f api.Fact) string {
	if f.Source == f.Kind {
		return f.Source
	}
	return f.Source + " (" + f.Kind + ")"
}

func ageOf(f api.Fact) string {
	switch {
	case f.Age == "":
		return "live"
	case f.Stale:
		return f.Age + " old, stale"
	}
	return f.Age + " old"
}
