// Package lab builds `bulkhead lab`: a small data center in network
// namespaces — hosts on an underlay, routed workloads behind them, a
// manager, an agent per host and the scenario's applications — records
// everything it starts in DIR/state.json, and removes it all again.
//
// The processes, namespaces and files are described in the "Lab" section of
// docs/ARCHITECTURE.md.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/lab/scenario"
	"github.com/bulkhead/bulkhead/internal/netlab"
)

// Defaults of Options.
const (
	DefaultDir         = "/var/lib/bulkhead-lab"
	DefaultPrefix      = "bhlab"
	DefaultScenario    = "shop"
	DefaultListen      = "127.0.0.1:8443"
	DefaultAgentListen = "127.0.0.1:8444"
)

// DirEnv, when set, is the default lab directory of every lab command.
const DirEnv = "BULKHEAD_LAB_DIR"

// Options say which lab to build and where.
type Options struct {
	// Dir holds the state file, the manager's data, the agents' state,
	// the applications' configurations and every log.
	Dir string
	// Prefix starts every namespace name; two labs on one machine need
	// two prefixes (and two Dirs, and two pairs of ports).
	Prefix string
	// Scenario is a built-in scenario's name or a scenario file.
	Scenario string
	// Hosts, if not 0, spreads the workloads over that many hosts
	// hv1..hvN instead of the scenario's own hosts.
	Hosts int
	// Listen and AgentListen are the manager's API and agent channel
	// addresses, on loopback; port 0 picks a free port.
	Listen, AgentListen string
	// Binary is the bulkhead executable the lab runs for the manager,
	// the agents and the applications.
	Binary string
	// Progress receives a line per step; nil discards them.
	Progress io.Writer
	// Timeout bounds the wait for each piece to come up; default 30s.
	Timeout time.Duration
}

var prefixRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]{0,15}$`)

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		o.Dir = DefaultDirFromEnv()
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("lab: dir %s: %w", o.Dir, err)
	}
	o.Dir = filepath.Clean(abs)
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(o.Prefix) {
		return fmt.Errorf("lab: prefix %q: want a letter then up to 15 letters or digits", o.Prefix)
	}
	if o.Scenario == "" {
		o.Scenario = DefaultScenario
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.AgentListen == "" {
		o.AgentListen = DefaultAgentListen
	}
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return fmt.Errorf("lab: the bulkhead binary: %w", err)
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return nil
}

// DefaultDirFromEnv is $BULKHEAD_LAB_DIR, else DefaultDir.
func DefaultDirFromEnv() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return DefaultDir
}

// CheckRoot returns a clear error unless the process runs as root.
func CheckRoot(what string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("bulkhead lab %s needs root: the lab is network namespaces, veth pairs and nftables tables, and its files are root's; run it with sudo", what)
	}
	return nil
}

// LoadScenario loads the scenario o names, spread over o.Hosts hosts.
func LoadScenario(source string, hosts int) (*scenario.Scenario, error) {
	sc, err := scenario.Load(source)
	if err != nil {
		return nil, err
	}
	if hosts > 0 {
		if sc, err = sc.WithHosts(hosts); err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// Up builds the lab o describes and returns its state. If a healthy lab of
// the same scenario already runs in o.Dir, it changes nothing and returns
// that lab's state with already set; a lab that is not healthy (a process
// died, a namespace is gone, `up` crashed) is removed and built again. A
// healthy lab of another scenario is an error: remove it first.
//
// When Up fails, it removes everything it made before returning.
func Up(ctx context.Context, o Options) (st *State, already bool, err error) {
	if err := o.setDefaults(); err != nil {
		return nil, false, err
	}
	if err := CheckRoot("up"); err != nil {
		return nil, false, err
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		return nil, false, errors.New("bulkhead lab up needs the ip command (iproute2)")
	}
	sc, err := LoadScenario(o.Scenario, o.Hosts)
	if err != nil {
		return nil, false, err
	}

	old, err := LoadState(o.Dir)
	switch {
	case err == nil:
		problems := old.Problems()
		same := old.Source == o.Scenario && old.HostCount == o.Hosts
		if len(problems) == 0 && same {
			return old, true, nil
		}
		if len(problems) == 0 {
			return nil, false, fmt.Errorf("lab: a lab of scenario %s (%s, hosts %d) runs in %s: remove it first with 'bulkhead lab down'",
				old.Scenario, old.Source, old.HostCount, o.Dir)
		}
		fmt.Fprintf(o.Progress, "the lab in %s is not healthy (%s): removing it and building it again\n", o.Dir, strings.Join(problems, "; "))
		if err := Down(o.Dir, old.Prefix, o.Progress); err != nil {
			return nil, false, err
		}
	case errors.Is(err, ErrNoLab):
		if left := namespaces(o.Prefix); len(left) > 0 {
			return nil, false, fmt.Errorf("lab: namespaces of prefix %s exist but %s holds no lab (another lab, or one whose directory was removed): remove them with 'bulkhead lab down --prefix %s' or pick another --prefix",
				o.Prefix, o.Dir, o.Prefix)
		}
	default:
		return nil, false, fmt.Errorf("%w (remove the lab with 'bulkhead lab down')", err)
	}

	listen, err := loopbackAddr("--listen", o.Listen)
	if err != nil {
		return nil, false, err
	}
	agentListen, err := loopbackAddr("--agent-listen", o.AgentListen)
	if err != nil {
		return nil, false, err
	}
	if listen == agentListen {
		return nil, false, fmt.Errorf("lab: --listen and --agent-listen are both %s", listen)
	}

	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("lab: %w", err)
	}
	st = &State{
		Version: stateVersion, Dir: o.Dir, Prefix: o.Prefix,
		Scenario: sc.Name, Source: o.Scenario, HostCount: o.Hosts,
		Binary: o.Binary, Created: time.Now().UTC(),
	}
	if err := st.Save(); err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(o.Progress, "lab up failed; removing what it made\n")
			if derr := Down(o.Dir, o.Prefix, io.Discard); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	b := &builder{o: o, st: st, sc: sc, ip: ipCmd}
	if err := b.network(); err != nil {
		return nil, false, err
	}
	if err := b.manager(ctx, listen, agentListen); err != nil {
		return nil, false, err
	}
	if err := b.inventory(ctx); err != nil {
		return nil, false, err
	}
	if err := b.agents(ctx); err != nil {
		return nil, false, err
	}
	if err := b.apps(ctx); err != nil {
		return nil, false, err
	}
	st.Ready = true
	if err := st.Save(); err != nil {
		return nil, false, err
	}
	return st, false, nil
}

// loopbackAddr checks that addr is a loopback host:port and that the port
// is free; port 0 becomes a free port.
func loopbackAddr(flag, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("lab: %s %q: want HOST:PORT: %w", flag, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("lab: %s %q: the lab's manager listens on loopback only", flag, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("lab: %s %s is not free (another manager? 'make demo-down' stops the lab): %w; pass %s %s:0 for any free port", flag, addr, err, flag, host)
	}
	got := ln.Addr().String()
	ln.Close()
	if port == "0" {
		return got, nil
	}
	return addr, nil
}

// namespaces returns the names of the namespaces of prefix.
func namespaces(prefix string) []string {
	ents, err := os.ReadDir(netlab.RunDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
