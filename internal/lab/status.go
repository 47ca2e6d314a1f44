package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bulkhead/bulkhead/internal/netlab"
)

// Problems lists what is not as Up left it: processes that died,
// namespaces that are gone, an `up` that did not finish. Empty means
// healthy.
func (s *State) Problems() []string {
	var out []string
	if !s.Ready {
		out = append(out, "'lab up' did not finish")
	}
	if p := s.Manager.Proc; p == nil || !p.Alive() {
		out = append(out, "the manager is not running")
	}
	for _, h := range s.Hosts {
		if _, err := os.Stat(h.NetNS); err != nil {
			out = append(out, fmt.Sprintf("host %s: namespace %s is gone", h.Name, h.NetNS))
		}
		if h.Agent == nil || !h.Agent.Alive() {
			out = append(out, fmt.Sprintf("host %s: the agent is not running", h.Name))
		}
	}
	for _, w := range s.Workloads {
		if _, err := os.Stat(filepath.Join(netlab.RunDir, w.NetNS)); err != nil {
			out = append(out, fmt.Sprintf("workload %s: namespace %s is gone", w.Name, w.NetNS))
		}
	}
	for _, a := range s.Apps {
		if a.Proc == nil || !a.Proc.Alive() {
			out = append(out, fmt.Sprintf("app %s/%s is not running (log %s)", a.Workload, a.Name, a.Proc.logPath()))
		}
	}
	return out
}

func (p *Proc) logPath() string {
	if p == nil {
		return "-"
	}
	return p.Log
}

// Status is what `bulkhead lab status` shows.
type Status struct {
	Dir      string    `json:"dir"`
	Prefix   string    `json:"prefix"`
	Scenario string    `json:"scenario"`
	Source   string    `json:"source"`
	Created  time.Time `json:"created"`
	Healthy  bool      `json:"healthy"`
	Problems []string  `json:"problems,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`

	Manager   ManagerStatus    `json:"manager"`
	Hosts     []HostStatus     `json:"hosts"`
	Workloads []WorkloadStatus `json:"workloads"`
	// LabCA verifies the lab's HTTPS servers (curl --cacert).
	LabCA string `json:"labCA"`
}

// ManagerStatus says where the manager is and whether it runs.
type ManagerStatus struct {
	URL          string `json:"url"`
	AgentAddress string `json:"agentAddress"`
	TokenFile    string `json:"tokenFile"`
	CA           string `json:"ca"`
	PID          int    `json:"pid"`
	Running      bool   `json:"running"`
	Log          string `json:"log"`
	// APIError is set when the manager runs but its API did not answer.
	APIError string `json:"apiError,omitempty"`
}

// HostStatus is a host, its agent and, from the manager, its policy state.
type HostStatus struct {
	Name         string `json:"name"`
	NetNS        string `json:"netns"`
	AgentPID     int    `json:"agentPid"`
	AgentRunning bool   `json:"agentRunning"`
	AgentLog     string `json:"agentLog"`
	// From the manager; false when it did not answer.
	Connected        bool   `json:"connected"`
	InSync           bool   `json:"inSync"`
	RealizedRevision int64  `json:"realizedRevision"`
	LastError        string `json:"lastError,omitempty"`
}

// WorkloadStatus is a workload and its applications.
type WorkloadStatus struct {
	Name      string            `json:"name"`
	Host      string            `json:"host"`
	NetNS     string            `json:"netns"`
	Interface string            `json:"interface"`
	IPs       []string          `json:"ips"`
	Tags      map[string]string `json:"tags"`
	Apps      []AppStatus       `json:"apps"`
}

// AppStatus is one application process.
type AppStatus struct {
	Name    string `json:"name"`
	App     string `json:"app"`
	Server  bool   `json:"server"`
	PID     int    `json:"pid"`
	Running bool   `json:"running"`
	Log     string `json:"log"`
}

// Status collects the lab's status; it asks the manager about the hosts
// when the manager answers.
func (s *State) Status(ctx context.Context) Status {
	out := Status{
		Dir: s.Dir, Prefix: s.Prefix, Scenario: s.Scenario, Source: s.Source, Created: s.Created,
		Problems: s.Problems(), Warnings: s.Warnings, LabCA: s.LabCA,
		Manager: ManagerStatus{
			URL: s.Manager.URL, AgentAddress: s.Manager.AgentAddress,
			TokenFile: s.Manager.TokenFile, CA: s.Manager.CA,
		},
	}
	out.Healthy = len(out.Problems) == 0
	if p := s.Manager.Proc; p != nil {
		out.Manager.PID, out.Manager.Running, out.Manager.Log = p.PID, p.Alive(), p.Log
	}
	type hostInfo struct {
		connected, inSync bool
		realized          int64
		lastErr           string
	}
	info := map[string]hostInfo{}
	if out.Manager.Running {
		c, err := s.Client()
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			hosts, herr := c.Hosts(cctx)
			cancel()
			err = herr
			for _, h := range hosts {
				info[h.Name] = hostInfo{h.Connected, h.InSync, h.RealizedRevision, h.LastError}
			}
		}
		if err != nil {
			out.Manager.APIError = err.Error()
		}
	}
	for _, h := range s.Hosts {
		hs := HostStatus{Name: h.Name, NetNS: h.NetNS}
		if h.Agent != nil {
			hs.AgentPID, hs.AgentRunning, hs.AgentLog = h.Agent.PID, h.Agent.Alive(), h.Agent.Log
		}
		i := info[h.Name]
		hs.Connected, hs.InSync, hs.RealizedRevision, hs.LastError = i.connected, i.inSync, i.realized, i.lastErr
		out.Hosts = append(out.Hosts, hs)
	}
	for _, w := range s.Workloads {
		ws := WorkloadStatus{Name: w.Name, Host: w.Host, NetNS: w.NetNS, Interface: w.Interface, IPs: w.addrs(), Tags: w.Tags, Apps: []AppStatus{}}
		if ws.Tags == nil {
			ws.Tags = map[string]string{}
		}
		for _, a := range s.Apps {
			if a.Workload != w.Name {
				continue
			}
			as := AppStatus{Name: a.Name, App: a.App, Server: a.Server}
			if a.Proc != nil {
				as.PID, as.Running, as.Log = a.Proc.PID, a.Proc.Alive(), a.Proc.Log
			}
			ws.Apps = append(ws.Apps, as)
		}
		out.Workloads = append(out.Workloads, ws)
	}
	return out
}
