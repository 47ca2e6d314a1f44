package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// readDocuments reads and validates every document of the given paths (files,
// directories walked for .yaml/.yml/.json, or "-" for stdin). All errors of
// all files are reported together; nothing is sent if any document is bad.
func readDocuments(paths []string, stdin io.Reader) ([]policy.Document, error) {
	if len(paths) == 0 {
		return nil, errors.New("no input: pass -f FILE, -f DIR or -f -")
	}
	var files []string
	for _, p := range paths {
		if p == "-" {
			files = append(files, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					found = append(found, path)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", p)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	var docs []policy.Document
	var errs policy.ErrorList
	for _, f := range files {
		var data []byte
		var err error
		name := f
		if f == "-" {
			name = "<stdin>"
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, err
		}
		ds, err := policy.Decode(name, data)
		if err != nil {
			var list policy.ErrorList
			if errors.As(err, &list) {
				errs = append(errs, list...)
				continue
			}
			return nil, err
		}
		for _, d := range ds {
			if v := policy.ValidateObject(d); len(v) > 0 {
				errs = append(errs, v...)
				continue
			}
			docs = append(docs, d)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d error(s); nothing was applied:\n%w", len(errs), errs)
	}
	if len(docs) == 0 {
		return nil, errors.New("the input holds no documents")
	}
	return docs, nil
}

func wireDocuments(docs []policy.Document) ([]api.Document, error) {
	out := make([]api.Document, len(docs))
	for i, d := range docs {
		b, err := json.Marshal(d.Object)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", d.Source.File, d.Source.Index, err)
		}
		out[i] = api.Document{Source: d.Source, Object: b}
	}
	return out, nil
}

// serverError renders the manager's validation details one per line. The
// manager sees documents as JSON, so where the error's document came from a
// local file, its line and column are looked up there.
func serverError(err error, docs ...policy.Document) error {
	var e *apiclient.Error
	if !errors.As(err, &e) || len(e.Body.Details) == 0 {
		return err
	}
	lines := make([]string, len(e.Body.Details))
	for i, d := range e.Body.Details {
		lines[i] = d.Message
		for _, doc := range docs {
			if doc.Source.File != d.File || doc.Source.Index != d.Index {
				continue
			}
			fe := &policy.FieldError{Source: doc.Source, Kind: policy.Kind(d.Kind), Name: d.Name, Field: d.Field, Reason: d.Reason}
			if pos, ok := doc.Source.At.Lookup(d.Field); ok {
				fe.Line, fe.Column = pos.Line, pos.Column
			}
			lines[i] = fe.Error()
		}
	}
	return fmt.Errorf("%d error(s); nothing was applied:\n%s", len(lines), strings.Join(lines, "\n"))
}

func (g *globals) applyFiles(cmd *cobra.Command, files []string, dryRun bool, summary string) (api.ApplyResponse, error) {
	docs, err := readDocuments(files, g.stdin)
	if err != nil {
		return api.ApplyResponse{}, err
	}
	wire, err := wireDocuments(docs)
	if err != nil {
		return api.ApplyResponse{}, err
	}
	c, err := g.client()
	if err != nil {
		return api.ApplyResponse{}, err
	}
	resp, err := c.Apply(ctx(cmd), api.ApplyRequest{Documents: wire, DryRun: dryRun, Summary: summary})
	return resp, serverError(err, docs...)
}

func (g *globals) printChanges(changes []policy.Change, withDiff bool) {
	for _, c := range changes {
		fmt.Fprintf(g.stdout, "%s/%s %s\n", c.Kind, c.Name, c.Op)
		if withDiff && c.Diff != "" {
			for _, l := range strings.Split(strings.TrimRight(c.Diff, "\n"), "\n") {
				fmt.Fprintf(g.stdout, "    %s\n", l)
			}
		}
	}
}

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var dryRun bool
	var summary string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update resources from YAML documents as one revision",
		Long: `Apply YAML (or JSON) documents — Workload, Group, Service, ContextProfile,
Policy, DefaultRule — as one new revision. Every document is checked first;
if any is bad, the errors name the file, document, field and line, and nothing
is applied.`,
		Example: `  bulkhead apply -f examples/shop.yaml
  bulkhead apply -f policies/ -m "open the API tier to monitoring"
  cat policy.yaml | bulkhead apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			resp, err := g.applyFiles(cmd, files, dryRun, summary)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(resp)
			}
			g.printChanges(resp.Changes, false)
			switch {
			case dryRun:
				fmt.Fprintf(g.stdout, "dry run: %d change(s), nothing written\n", len(resp.Changes))
			case len(resp.Changes) == 0:
				fmt.Fprintf(g.stdout, "no change (revision %d)\n", resp.Revision)
			default:
				fmt.Fprintf(g.stdout, "revision %d published\n", resp.Revision)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - for stdin (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show the changes without applying")
	cmd.Flags().StringVarP(&summary, "message", "m", "", "summary recorded with the revision")
	return cmd
}

func newDiffCmd(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR|-",
		Short: "Show what applying the documents would change",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			resp, err := g.applyFiles(cmd, files, true, "")
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(resp.Changes)
			}
			if len(resp.Changes) == 0 {
				fmt.Fprintf(g.stdout, "no change against revision %d\n", resp.Revision)
				return nil
			}
			g.printChanges(resp.Changes, true)
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - for stdin (repeatable)")
	return cmd
}
