package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/bulkhead/bulkhead/internal/manager"
)

// managerFile is the strict schema of `bulkhead manager --config FILE`.
type managerFile struct {
	DataDir string `yaml:"dataDir"`
	Listen  string `yaml:"listen"`
	// AgentListen is a pointer so that an explicit "" (channel off) differs
	// from leaving the default.
	AgentListen *string  `yaml:"agentListen"`
	Hosts       []string `yaml:"hosts"`
	LogLevel    string   `yaml:"logLevel"`
	IPFIXListen string   `yaml:"ipfixListen"`
}

func loadManagerConfig(path string) (manager.Config, error) {
	cfg := manager.Defaults()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("manager config: %w", err)
	}
	var f managerFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("manager config %s: %w", path, err)
	}
	if f.DataDir != "" {
		cfg.DataDir = f.DataDir
	}
	if f.Listen != "" {
		cfg.Listen = f.Listen
	}
	if f.LogLevel != "" {
		cfg.LogLevel = f.LogLevel
	}
	if f.AgentListen != nil {
		cfg.AgentListen = *f.AgentListen
	}
	if f.IPFIXListen != "" {
		cfg.IPFIXListen = f.IPFIXListen
	}
	cfg.Hosts = f.Hosts
	return cfg, nil
}

func newManagerCmd(g *globals) *cobra.Command {
	var file, dataDir, listen, agentListen, ipfixListen, logLevel string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the control plane (API, store, CA)",
		Long: `Run the Bulkhead manager: the REST API (HTTPS, certificate from its own CA
in DATA-DIR/ca.crt), the embedded SQLite store, and Prometheus metrics.

On first start it creates an admin API token in DATA-DIR/admin.token (mode 0600).
Flags override the config file, which is decoded strictly (unknown keys are errors):

  dataDir: /var/lib/bulkhead
  listen: 127.0.0.1:8443
  agentListen: 127.0.0.1:8444         # agents' gRPC channel; "" turns it off
  hosts: [manager.example.internal]   # extra names for the server certificate
  ipfixListen: 0.0.0.0:4739           # IPFIX / NetFlow v9 collector (UDP); off if empty
  logLevel: info`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadManagerConfig(file)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			if cmd.Flags().Changed("listen") {
				cfg.Listen = listen
			}
			if cmd.Flags().Changed("agent-listen") {
				cfg.AgentListen = agentListen
			}
			if cmd.Flags().Changed("ipfix-listen") {
				cfg.IPFIXListen = ipfixListen
			}
			if cmd.Flags().Changed("log-level") {
				cfg.LogLevel = logLevel
			}
			cfg.Hosts = append(cfg.Hosts, hosts...)
			var level slog.Level
			if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
				return fmt.Errorf("log level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			srv, err := manager.New(cfg, log)
			if err != nil {
				return err
			}
			defer srv.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return srv.Run(ctx)
		},
	}
	d := manager.Defaults()
	cmd.Flags().StringVar(&file, "config", "", "manager config file (YAML)")
	cmd.Flags().StringVar(&dataDir, "data-dir", d.DataDir, "directory for the store, the CA and the admin token")
	cmd.Flags().StringVar(&listen, "listen", d.Listen, "HTTPS listen address")
	cmd.Flags().StringVar(&agentListen, "agent-listen", d.AgentListen, "gRPC address of the agent channel (mutual TLS); empty turns it off")
	cmd.Flags().StringVar(&ipfixListen, "ipfix-listen", "", "UDP address of the IPFIX / NetFlow v9 collector, e.g. 0.0.0.0:4739; empty turns it off")
	cmd.Flags().StringVar(&logLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "extra DNS name or IP for the server certificate (repeatable)")
	return cmd
}
