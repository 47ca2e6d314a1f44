package cli

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
)

func newImportFlowsCmd(g *globals) *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "zeek FILE|-",
		Short: "Import a Zeek conn.log as flow records",
		Long: `Import the connections of a Zeek conn.log (tab-separated with its #fields
header, or JSON lines; gzip'd files too) as flow records, for networks that
run Zeek sensors instead of Bulkhead agents.

The file is streamed to the manager, which stores it in batches. The records'
host is "zeek/SENSOR" (--host; "default" if not given), so they are found with
'bulkhead flows --host zeek/SENSOR' and never mix with an agent's. They carry
no rule (the data plane did not decide them): rule 0, verdict allow. Lines
that are not connections are skipped and listed with their line numbers.
Importing a file again changes nothing: records merge by connection.`,
		Example: `  bulkhead import zeek /opt/zeek/logs/current/conn.log --host sensor1
  zcat conn.*.log.gz | bulkhead import zeek - --host sensor1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			in, closeIn, err := openFlowFile(args[0], g.stdin)
			if err != nil {
				return err
			}
			defer closeIn()
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.ImportFlows(ctx(cmd), api.FlowFormatZeek, host, in)
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			if g.output != "table" {
				if err := g.printData(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "%d records imported as host %s, %d lines skipped\n", res.Records, res.Host, res.Skipped)
				for _, e := range res.Errors {
					fmt.Fprintf(g.stdout, "  %s:%d: %s\n", args[0], e.Line, e.Reason)
				}
				if n := res.Skipped - len(res.Errors); n > 0 {
					fmt.Fprintf(g.stdout, "  ... and %d more\n", n)
				}
			}
			if res.Records == 0 && res.Skipped > 0 {
				return fmt.Errorf("import %s: no connection read, %d lines skipped: is it a Zeek conn.log?", args[0], res.Skipped)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&host, "host", "", `sensor name: records are stored as host "zeek/NAME" (default "default")`)
	return cmd
}

// openFlowFile opens path ("-" for stdin) and undoes gzip if the content
// starts with its magic number.
func openFlowFile(path string, stdin io.Reader) (io.Reader, func(), error) {
	var (
		r    io.Reader = stdin
		done           = func() {}
	)
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		r, done = f, func() { f.Close() }
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			done()
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return zr, done, nil
	}
	return br, done, nil
}
