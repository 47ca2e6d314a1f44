// Package cli is the bulkhead command line: every subcommand, the resolution
// of which manager to talk to, and table/YAML/JSON output.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/bulkhead/bulkhead/internal/apiclient"
)

// Version is set at build time with -ldflags.
var Version = "dev"

// globals are the flags every command shares.
type globals struct {
	server    string
	tokenFile string
	ca        string
	config    string
	output    string
	stdout    io.Writer
	stderr    io.Writer
	stdin     io.Reader
}

// Execute runs the CLI with os.Args and returns the process exit code.
func Execute() int {
	root := NewRoot(os.Stdin, os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// NewRoot builds the command tree; tests call it with their own streams.
func NewRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, stdin: stdin}
	root := &cobra.Command{
		Use:   "bulkhead",
		Short: "Micro-segmentation for Linux data centers",
		Long: `Bulkhead watches the traffic between workloads, maps applications and flows,
recommends zero-trust rules, and enforces them in the kernel of every host.

The manager keeps policy as numbered revisions; the CLI talks to its REST API.
Which manager: --server/--token-file/--ca, else BULKHEAD_SERVER, BULKHEAD_TOKEN
(or BULKHEAD_TOKEN_FILE) and BULKHEAD_CA, else the file written by 'bulkhead login'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", "", "manager URL, e.g. https://127.0.0.1:8443")
	pf.StringVar(&g.tokenFile, "token-file", "", "file holding the API token")
	pf.StringVar(&g.ca, "ca", "", "the manager's CA certificate (ca.crt in its data dir)")
	pf.StringVar(&g.config, "client-config", "", "CLI config file (default $XDG_CONFIG_HOME/bulkhead/config.yaml)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, yaml or json")

	root.AddCommand(
		newManagerCmd(g),
		newLoginCmd(g),
		newApplyCmd(g),
		newDiffCmd(g),
		newGetCmd(g),
		newDescribeCmd(g),
		newDeleteCmd(g),
		newHistoryCmd(g),
		newRollbackCmd(g),
		newEvalCmd(g),
		newAuditCmd(g),
		newFlowsCmd(g),
		newAPITokenCmd(g),
		newTokenCmd(g),
		newAgentCmd(g),
		newLabCmd(g),
		newImportCmd(g),     // import.go: cmdb (import_cmdb.go), zeek (import_flows.go)
		newSourceCmd(g),     // source.go: vCenter and other inventory sources
		newMapCmd(g),        // analysis.go
		newComplianceCmd(g), // analysis.go
		newWhatIfCmd(g),     // analysis.go
		newRecommendCmd(g),  // recommend.go
		newDiscoverCmd(g),   // recommend.go
		newDPICmd(g),
		newIdentityCmd(g), // identity.go: directory users and groups, login sessions
		newIDSCmd(g),      // ids.go: signature sets, alerts, offline reading
	)
	return root
}

// Connection is what the CLI needs to reach a manager; it is also the
// strict schema of the CLI config file.
type Connection struct {
	Server    string `yaml:"server"`
	Token     string `yaml:"token,omitempty"`
	TokenFile string `yaml:"tokenFile,omitempty"`
	CA        string `yaml:"ca,omitempty"`
}

func (g *globals) configPath() string {
	if g.config != "" {
		return g.config
	}
	if p := os.Getenv("BULKHEAD_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = filepath.Join(os.Getenv("HOME"), ".config")
	}
	return filepath.Join(dir, "bulkhead", "config.yaml")
}

// readConfig decodes the CLI config strictly; a missing file is not an error.
func readConfig(path string) (Connection, bool, error) {
	var c Connection
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("config %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, false, fmt.Errorf("config %s: %w", path, err)
	}
	return c, true, nil
}

// connection resolves flags, then environment, then the config file, field
// by field.
func (g *globals) connection() (Connection, error) {
	file, _, err := readConfig(g.configPath())
	if err != nil {
		return Connection{}, err
	}
	pick := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	c := Connection{
		Server:    pick(g.server, os.Getenv("BULKHEAD_SERVER"), file.Server),
		TokenFile: pick(g.tokenFile, os.Getenv("BULKHEAD_TOKEN_FILE")),
		CA:        pick(g.ca, os.Getenv("BULKHEAD_CA"), file.CA),
	}
	if c.TokenFile == "" {
		c.Token = os.Getenv("BULKHEAD_TOKEN")
		if c.Token == "" {
			c.Token, c.TokenFile = file.Token, file.TokenFile
		}
	}
	if c.Server == "" {
		return c, errors.New("no manager: pass --server, set BULKHEAD_SERVER, or run 'bulkhead login'")
	}
	return c, nil
}

func (g *globals) client() (*apiclient.Client, error) {
	c, err := g.connection()
	if err != nil {
		return nil, err
	}
	token := c.Token
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, errors.New("no API token: pass --token-file, set BULKHEAD_TOKEN, or run 'bulkhead login'")
	}
	var caPEM []byte
	if c.CA != "" {
		if caPEM, err = os.ReadFile(c.CA); err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
	}
	return apiclient.New(c.Server, token, caPEM)
}

func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "yaml", "json":
		return nil
	}
	return fmt.Errorf("--output %q: want table, yaml or json", g.output)
}

// printData writes v as JSON or YAML (through JSON, so field names are the
// API's).
func (g *globals) printData(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if g.output == "json" {
		_, err = fmt.Fprintf(g.stdout, "%s\n", b)
		return err
	}
	out, err := jsonToYAML(b)
	if err != nil {
		return err
	}
	_, err = g.stdout.Write(out)
	return err
}

func ctx(cmd *cobra.Command) context.Context { return cmd.Context() }

// jsonToYAML re-renders JSON as block-style YAML, keeping the key order.
func jsonToYAML(b []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	return yaml.Marshal(&n)
}
