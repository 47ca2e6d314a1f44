package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"github.com/bulkhead/bulkhead/internal/lab/scenario"
	"github.com/bulkhead/bulkhead/internal/manager"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// EtcNetns is where `ip netns exec NAME` finds files it bind-mounts over
// /etc for the command: the lab puts each workload's resolv.conf there, so
// that commands run with `bulkhead lab exec` resolve names with the lab's
// DNS server.
const EtcNetns = "/etc/netns"

// agentDNSGrace is what the lab's agents add to a DNS answer's TTL before
// an FQDN rule forgets the address (BULKHEAD_AGENT_DNS_GRACE).
const agentDNSGrace = 3 * time.Second

// builder carries Up's steps.
type builder struct {
	o      Options
	st     *State
	sc     *scenario.Scenario
	ip     string // the ip command
	client *apiclient.Client
}

func (b *builder) progress(format string, args ...any) {
	fmt.Fprintf(b.o.Progress, format+"\n", args...)
}

// network makes the namespaces: the underlay, the hosts and the
// workloads, with the scenario's addresses.
func (b *builder) network() error {
	b.progress("network: %d hosts, %d workloads (namespaces %s-*)", len(b.sc.Hosts), len(b.sc.Workloads), b.o.Prefix)
	topo, err := netlab.New(b.o.Prefix)
	if err != nil {
		return err
	}
	// The namespaces stay (they are mounted under /run/netns); only this
	// process's descriptors of them go.
	defer func() {
		topo.Underlay.Close()
		for _, h := range topo.Hosts() {
			h.NS.Close()
		}
		for _, w := range topo.Workloads() {
			w.NS.Close()
		}
	}()
	for _, h := range b.sc.Hosts {
		nh, err := topo.AddHost(h.Name)
		if err != nil {
			return err
		}
		b.st.Hosts = append(b.st.Hosts, Host{
			Name: h.Name, NetNS: filepath.Join(netlab.RunDir, nh.NS.Name),
			UnderlayV4: nh.UnderlayV4.String(),
			StateDir:   filepath.Join(b.o.Dir, "agents", h.Name),
		})
	}
	if err := b.st.Save(); err != nil {
		return err
	}
	var resolver string
	if w := b.sc.Workload(b.sc.Network.DNS); w != nil {
		resolver = w.IPv4
	}
	for i := range b.sc.Workloads {
		w := &b.sc.Workloads[i]
		h := topo.Host(w.Host)
		if h == nil {
			return fmt.Errorf("lab: workload %s: no host %s", w.Name, w.Host)
		}
		nw, err := topo.AddWorkload(h, netlab.WorkloadConfig{Name: w.Name, IPv4: w.Addr4(), IPv6: w.Addr6()})
		if err != nil {
			return err
		}
		if !w.Addr6().IsValid() {
			// netlab gives every workload an IPv6 address; a workload the
			// scenario gives none must not have one.
			if err := dropIPv6(topo, nw); err != nil {
				return fmt.Errorf("lab: workload %s: %w", w.Name, err)
			}
		}
		b.st.Workloads = append(b.st.Workloads, Workload{
			Name: w.Name, Host: w.Host, NetNS: nw.NS.Name, Interface: nw.Interface,
			IPv4: w.IPv4, IPv6: w.IPv6, Tags: w.Tags, OS: w.OS,
		})
		if resolver != "" {
			path, err := writeResolvConf(nw.NS.Name, resolver, b.sc.Network.Domain)
			if err != nil {
				return err
			}
			b.st.Files = append(b.st.Files, path)
		}
	}
	return b.st.Save()
}

// dropIPv6 removes the IPv6 address netlab gave w, and every route to it.
func dropIPv6(topo *netlab.Topology, w *netlab.Workload) error {
	dst := &net.IPNet{IP: w.IPv6.AsSlice(), Mask: net.CIDRMask(128, 128)}
	err := withHandle(w.NS, func(h *netlink.Handle) error {
		link, err := h.LinkByName(netlab.WorkloadIf)
		if err != nil {
			return err
		}
		return h.AddrDel(link, &netlink.Addr{IPNet: dst})
	})
	if err != nil {
		return fmt.Errorf("remove address %s: %w", w.IPv6, err)
	}
	for _, host := range topo.Hosts() {
		err := withHandle(host.NS, func(h *netlink.Handle) error {
			return h.RouteDel(&netlink.Route{Dst: dst})
		})
		if err != nil {
			return fmt.Errorf("host %s: remove route %s: %w", host.Name, w.IPv6, err)
		}
	}
	return nil
}

func withHandle(ns *netlab.Namespace, fn func(*netlink.Handle) error) error {
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// writeResolvConf makes /etc/netns/NS/resolv.conf and returns the directory.
func writeResolvConf(ns, resolver, domain string) (string, error) {
	dir := filepath.Join(EtcNetns, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	text := "# written by bulkhead lab: the lab's DNS server\nnameserver " + resolver + "\n"
	if domain != "" {
		text += "search " + domain + "\n"
	}
	text += "options timeout:2 attempts:2\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	return dir, nil
}

// manager starts the manager in the root namespace and waits for its API.
func (b *builder) manager(ctx context.Context, listen, agentListen string) error {
	dataDir := filepath.Join(b.o.Dir, "manager")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	args := []string{b.o.Binary, "manager", "--data-dir", dataDir, "--listen", listen, "--agent-listen", agentListen}
	logPath := filepath.Join(b.o.Dir, "manager.log")
	p, err := startProc(args, os.Environ(), logPath)
	if err != nil {
		return err
	}
	b.st.Manager = Manager{
		URL: "https://" + listen, AgentAddress: agentListen, DataDir: dataDir,
		TokenFile: filepath.Join(dataDir, manager.AdminTokenFile), CA: filepath.Join(dataDir, "ca.crt"),
		Proc: &p,
	}
	if err := b.st.Save(); err != nil {
		return err
	}
	b.progress("manager: %s (pid %d, log %s)", b.st.Manager.URL, p.PID, logPath)
	deadline := time.Now().Add(b.o.Timeout)
	var last error
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return fmt.Errorf("lab: the manager exited; %s:\n%s", logPath, tail(logPath, 20))
		}
		c, err := b.st.Client()
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = c.WhoAmI(cctx)
			cancel()
			if err == nil {
				b.client = c
				return nil
			}
		}
		last = err
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("lab: the manager did not answer within %s: %v; %s:\n%s", b.o.Timeout, last, logPath, tail(logPath, 20))
}

// inventory declares the scenario's workloads with their CMDB tags, before
// any agent reports: an agent's report then binds each interface to its
// workload (same host and interface, or same address) instead of creating
// a "HOST-INTERFACE" workload.
func (b *builder) inventory(ctx context.Context) error {
	var docs []api.Document
	for i, w := range b.st.Workloads {
		obj := &policy.Workload{
			Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload,
				Metadata: policy.Metadata{Name: w.Name, Description: b.sc.Workloads[i].Description}},
			Spec: policy.WorkloadSpec{IPs: w.addrs(), Host: w.Host, Interface: w.Interface, Tags: w.Tags, OS: w.OS},
		}
		raw, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("lab: workload %s: %w", w.Name, err)
		}
		docs = append(docs, api.Document{Source: policy.Source{File: "lab:" + b.sc.Name, Index: i + 1}, Object: raw})
	}
	if _, err := b.client.Apply(ctx, api.ApplyRequest{Documents: docs, Summary: "lab: workloads of scenario " + b.sc.Name}); err != nil {
		return fmt.Errorf("lab: declare the workloads: %w", err)
	}
	b.progress("inventory: %d workloads declared with their tags", len(docs))
	return nil
}

// agents starts one agent per host, in the root namespace, managing the
// host's namespace, and waits until each one is connected and enforces its
// host's desired state.
func (b *builder) agents(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(b.o.Dir, "agents"), 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for i := range b.st.Hosts {
		h := &b.st.Hosts[i]
		tok, err := b.client.CreateBootstrapToken(ctx, api.BootstrapTokenRequest{TTL: "15m", Host: h.Name})
		if err != nil {
			return fmt.Errorf("lab: bootstrap token for %s: %w", h.Name, err)
		}
		if err := b.startAgent(h, tok); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(b.o.Timeout)
	for {
		// In sync: the host's table is in its kernel, so the applications'
		// first connections are already decided (and marked) by it. A
		// connection the data plane never decided makes no flow record.
		ready := map[string]bool{}
		hosts, err := b.client.Hosts(ctx)
		if err == nil {
			for _, h := range hosts {
				ready[h.Name] = h.Connected && h.InSync
			}
		}
		waiting := []string{}
		for i := range b.st.Hosts {
			h := &b.st.Hosts[i]
			if ready[h.Name] {
				continue
			}
			if !h.Agent.Alive() {
				return fmt.Errorf("lab: the agent of %s exited; %s:\n%s", h.Name, h.Agent.Log, tail(h.Agent.Log, 20))
			}
			waiting = append(waiting, h.Name)
		}
		if len(waiting) == 0 {
			b.progress("agents: %d connected and enforcing", len(b.st.Hosts))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: agents of %s not connected and in sync after %s; see %s", strings.Join(waiting, ", "), b.o.Timeout, filepath.Join(b.o.Dir, "agents", "*.log"))
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func (b *builder) startAgent(h *Host, tok api.BootstrapTokenCreated) error {
	addr := tok.AgentAddress
	if addr == "" {
		addr = b.st.Manager.AgentAddress
	}
	args := []string{b.o.Binary, "agent",
		"--manager", addr, "--ca-fingerprint", tok.CAFingerprint,
		"--host-name", h.Name, "--state-dir", h.StateDir, "--netns", h.NetNS}
	// The token goes through the environment, out of the process list.
	// The lab's names move with TTLs of seconds; a short DNS grace lets
	// FQDN rules forget a moved name's old address within seconds too
	// (the agent's default, 30s, suits real resolvers' caches).
	env := append(os.Environ(), "BULKHEAD_BOOTSTRAP_TOKEN="+tok.Secret, "BULKHEAD_AGENT_DNS_GRACE="+agentDNSGrace.String())
	p, err := startProc(args, env, filepath.Join(b.o.Dir, "agents", h.Name+".log"))
	if err != nil {
		return err
	}
	h.Agent = &p
	b.progress("agent %s: pid %d, managing %s", h.Name, p.PID, h.NetNS)
	return b.st.Save()
}

// apps starts the scenario's applications in the workloads' namespaces:
// the servers, then (once they listen) the clients.
func (b *builder) apps(ctx context.Context) error {
	ca, err := apps.NewCA("Bulkhead lab CA")
	if err != nil {
		return fmt.Errorf("lab: CA: %w", err)
	}
	b.st.LabCA = filepath.Join(b.o.Dir, "lab-ca.crt")
	if err := os.WriteFile(b.st.LabCA, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	launches, err := b.sc.Launches(scenario.LaunchOptions{CA: ca})
	if err != nil {
		return err
	}
	servers := map[string]int{} // workload -> servers
	firstPID := map[string]int{}
	for _, l := range launches {
		if l.Server {
			if err := b.startApp(l); err != nil {
				return err
			}
			servers[l.Workload]++
			if firstPID[l.Workload] == 0 {
				firstPID[l.Workload] = b.st.Apps[len(b.st.Apps)-1].Proc.PID
			}
		}
	}
	if err := b.waitListening(ctx, servers, firstPID); err != nil {
		return err
	}
	n := len(b.st.Apps)
	for _, l := range launches {
		if !l.Server {
			if err := b.startApp(l); err != nil {
				return err
			}
		}
	}
	b.progress("applications: %d servers, %d clients", n, len(b.st.Apps)-n)
	return nil
}

func (b *builder) startApp(l scenario.Launch) error {
	w := b.st.Workload(l.Workload)
	if w == nil {
		return fmt.Errorf("lab: app %s: no workload %s", l.Name, l.Workload)
	}
	cfg, err := l.JSON()
	if err != nil {
		return fmt.Errorf("lab: app %s/%s: %w", l.Workload, l.Name, err)
	}
	dir := filepath.Join(b.o.Dir, "apps", l.Workload)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	cfgPath := filepath.Join(dir, l.Name+".json")
	// Configurations hold passwords and the lab CA's key: root only.
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	args := []string{b.ip, "netns", "exec", w.NetNS, b.o.Binary, "lab", "app", l.App, "--config-file", cfgPath}
	p, err := startProc(args, os.Environ(), filepath.Join(dir, l.Name+".log"))
	if err != nil {
		return err
	}
	b.st.Apps = append(b.st.Apps, App{Workload: l.Workload, Name: l.Name, App: l.App, Server: l.Server, Config: cfgPath, Proc: &p})
	return b.st.Save()
}

// waitListening waits until each workload's namespace has at least as many
// listening TCP sockets as it runs servers (every server listens on TCP),
// so that the clients' first round finds them.
func (b *builder) waitListening(ctx context.Context, servers, pid map[string]int) error {
	deadline := time.Now().Add(b.o.Timeout)
	for {
		var waiting []string
		for wl, n := range servers {
			if got, _ := listeners(pid[wl]); got < n {
				waiting = append(waiting, wl)
			}
		}
		for _, a := range b.st.Apps {
			if !a.Proc.Alive() {
				return fmt.Errorf("lab: app %s/%s exited; %s:\n%s", a.Workload, a.Name, a.Proc.Log, tail(a.Proc.Log, 20))
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(waiting)
			return fmt.Errorf("lab: servers of %s not listening after %s; see %s", strings.Join(waiting, ", "), b.o.Timeout, filepath.Join(b.o.Dir, "apps"))
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// Client returns an API client of the lab's manager, as admin.
func (s *State) Client() (*apiclient.Client, error) {
	tok, err := os.ReadFile(s.Manager.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("lab: admin token: %w", err)
	}
	ca, err := os.ReadFile(s.Manager.CA)
	if err != nil {
		return nil, fmt.Errorf("lab: manager CA: %w", err)
	}
	return apiclient.New(s.Manager.URL, strings.TrimSpace(string(tok)), ca)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// addrs returns the workload's addresses, IPv4 first.
func (w *Workload) addrs() []string {
	out := []string{w.IPv4}
	if w.IPv6 != "" {
		out = append(out, w.IPv6)
	}
	return out
}
