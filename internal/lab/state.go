package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StateFile is the name of the lab's record under its directory.
const StateFile = "state.json"

// stateVersion changes when State changes incompatibly.
const stateVersion = 1

// State is everything a lab made, written to DIR/state.json as each piece
// comes up, so that `bulkhead lab down` can remove it all even after `up`
// crashed half-way.
type State struct {
	Version int    `json:"version"`
	Dir     string `json:"dir"`
	// Prefix starts the name of every namespace the lab made
	// (PREFIX-ul, PREFIX-HOST, PREFIX-HOST-WORKLOAD).
	Prefix string `json:"prefix"`
	// Scenario is the scenario's name; Source is what --scenario said
	// (a built-in name or a file).
	Scenario string `json:"scenario"`
	Source   string `json:"source"`
	// HostCount is --hosts (0: as the scenario says).
	HostCount int       `json:"hostCount"`
	Binary    string    `json:"binary"`
	Created   time.Time `json:"created"`
	// Ready is set once every piece is up.
	Ready bool `json:"ready"`

	Manager   Manager    `json:"manager"`
	Hosts     []Host     `json:"hosts"`
	Workloads []Workload `json:"workloads"`
	Apps      []App      `json:"apps"`
	// Files are files the lab made outside Dir (the workloads'
	// /etc/netns/NAME/resolv.conf).
	Files []string `json:"files,omitempty"`
	// LabCA is the certificate of the CA that issued the lab's HTTPS
	// servers' certificates (curl --cacert it).
	LabCA string `json:"labCA"`
	// Warnings are what did not work as it should, for status to repeat.
	Warnings []string `json:"warnings,omitempty"`
}

// Manager is the lab's manager process and how to reach it.
type Manager struct {
	URL          string `json:"url"`
	AgentAddress string `json:"agentAddress"`
	DataDir      string `json:"dataDir"`
	TokenFile    string `json:"tokenFile"`
	CA           string `json:"ca"`
	Proc         *Proc  `json:"proc,omitempty"`
}

// Host is a hypervisor namespace and its agent.
type Host struct {
	Name       string `json:"name"`
	NetNS      string `json:"netns"`
	UnderlayV4 string `json:"underlayIPv4"`
	StateDir   string `json:"stateDir"`
	Agent      *Proc  `json:"agent,omitempty"`
}

// Workload is a workload namespace behind a host.
type Workload struct {
	Name      string            `json:"name"`
	Host      string            `json:"host"`
	NetNS     string            `json:"netns"`
	Interface string            `json:"interface"`
	IPv4      string            `json:"ipv4"`
	IPv6      string            `json:"ipv6,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
	OS        string            `json:"os,omitempty"`
}

// App is one lab application running in a workload's namespace.
type App struct {
	Workload string `json:"workload"`
	Name     string `json:"name"`
	App      string `json:"app"`
	Server   bool   `json:"server"`
	Config   string `json:"config"`
	Proc     *Proc  `json:"proc,omitempty"`
}

// Procs returns every process the state records, applications first, then
// agents, then the manager: the order to stop them in.
func (s *State) Procs() []Proc {
	var out []Proc
	for _, a := range s.Apps {
		if a.Proc != nil {
			out = append(out, *a.Proc)
		}
	}
	for _, h := range s.Hosts {
		if h.Agent != nil {
			out = append(out, *h.Agent)
		}
	}
	if s.Manager.Proc != nil {
		out = append(out, *s.Manager.Proc)
	}
	return out
}

// Workload returns the workload called name, or nil.
func (s *State) Workload(name string) *Workload {
	for i := range s.Workloads {
		if s.Workloads[i].Name == name {
			return &s.Workloads[i]
		}
	}
	return nil
}

// Host returns the host called name, or nil.
func (s *State) Host(name string) *Host {
	for i := range s.Hosts {
		if s.Hosts[i].Name == name {
			return &s.Hosts[i]
		}
	}
	return nil
}

// Save writes the state atomically to DIR/state.json.
func (s *State) Save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	path := filepath.Join(s.Dir, StateFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	return nil
}

// ErrNoLab is returned (wrapped) by LoadState when dir holds no lab.
var ErrNoLab = errors.New("no lab")

// LoadState reads DIR/state.json.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab: %w in %s (start one with 'bulkhead lab up')", ErrNoLab, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab: state %s: %w", filepath.Join(dir, StateFile), err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("lab: state %s: version %d, this bulkhead writes %d: remove the lab with the bulkhead that made it", filepath.Join(dir, StateFile), s.Version, stateVersion)
	}
	return &s, nil
}
