package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// IDSProfile chooses which intrusion detection signatures inspect the
// traffic of some workloads, and whether their drop rules block it.
type IDSProfile struct {
	Header `json:",inline"`
	Spec   IDSProfileSpec `json:"spec"`
}

// IDS modes: detect inspects a copy of the traffic and only alerts;
// prevent inspects inline and enforces the drop/reject signatures.
const (
	IDSModeDetect  = "detect"
	IDSModePrevent = "prevent"
)

// IDSModes lists the values of IDSProfileSpec.Mode.
var IDSModes = []string{IDSModeDetect, IDSModePrevent}

// Prevent actions: what a prevent profile enforces. asWritten blocks only
// with the signatures written as drop or reject; drop and reject also
// enforce the alert signatures the profile chose, as feeds such as
// Emerging Threats Open write every signature as alert (suricata-update's
// drop.conf does the same for Suricata).
const (
	IDSPreventAsWritten = "asWritten"
	IDSPreventDrop      = "drop"
	IDSPreventReject    = "reject"
)

// IDSPreventActions lists the values of IDSProfileSpec.PreventAction.
var IDSPreventActions = []string{IDSPreventAsWritten, IDSPreventDrop, IDSPreventReject}

// IDSProfileSpec is the scope, the mode and the signature filter of a
// profile.
type IDSProfileSpec struct {
	// AppliedTo are groups whose workloads the profile inspects; empty
	// means every workload.
	AppliedTo []string `json:"appliedTo,omitempty"`
	// Mode is detect or prevent.
	Mode       string             `json:"mode"`
	Signatures IDSSignatureFilter `json:"signatures,omitempty"`
	// WorkloadAware (default true) leaves out, per workload, the
	// signatures that target what the inventory says it does not run: a
	// database tier gets no web-server signatures, a Linux workload no
	// Windows-only ones. A workload the inventory knows nothing about
	// gets every signature the filter chose.
	WorkloadAware *bool `json:"workloadAware,omitempty"`
	// PreventAction (prevent mode only) is asWritten (the default: only
	// drop/reject signatures block), drop (every signature the profile
	// chose blocks: alert signatures drop the packet and block the flow)
	// or reject (the same, and TCP flows are reset).
	PreventAction string `json:"preventAction,omitempty"`
}

// EnforcedPreventAction returns PreventAction with its default.
func (s *IDSProfileSpec) EnforcedPreventAction() string {
	if s.PreventAction == "" {
		return IDSPreventAsWritten
	}
	return s.PreventAction
}

// IsWorkloadAware returns WorkloadAware with its default.
func (s *IDSProfileSpec) IsWorkloadAware() bool { return s.WorkloadAware == nil || *s.WorkloadAware }

// IDSSignatureFilter selects signatures. Every condition given must hold
// (an empty one holds for all); SIDs are in whatever the rest says, and
// ExcludeSIDs out whatever the rest says.
type IDSSignatureFilter struct {
	// MaxSeverity (1-4) keeps the signatures whose priority is at most
	// this (1 is the most severe); 0 keeps all.
	MaxSeverity       int      `json:"maxSeverity,omitempty"`
	Classtypes        []string `json:"classtypes,omitempty"`
	ExcludeClasstypes []string `json:"excludeClasstypes,omitempty"`
	// Metadata keeps a signature when, for every key listed, its metadata
	// has one of the values (keys and values compared case-insensitively),
	// e.g. attack_target: [Web_Server, Server].
	Metadata map[string][]string `json:"metadata,omitempty"`
	// CVEs keeps the signatures that name one of these (reference:cve or
	// metadata cve), written CVE-2021-44228.
	CVEs        []string `json:"cves,omitempty"`
	SIDs        []uint32 `json:"sids,omitempty"`
	ExcludeSIDs []uint32 `json:"excludeSids,omitempty"`
	// SignatureSets names the imported sets to take signatures from;
	// empty means all of them.
	SignatureSets []string `json:"signatureSets,omitempty"`
}

// IDSVariables overrides the address and port variables signatures are
// read with ($HOME_NET, $HTTP_PORTS, ...). There is at most one, named
// "default".
type IDSVariables struct {
	Header `json:",inline"`
	Spec   IDSVariablesSpec `json:"spec"`
}

// IDSVariablesSpec maps variable names (without "$") to values as
// suricata.yaml writes them: address: {HOME_NET: "[10.0.0.0/8]"},
// port: {HTTP_PORTS: "[80,8080]"}.
type IDSVariablesSpec struct {
	Address map[string]string `json:"address,omitempty"`
	Port    map[string]string `json:"port,omitempty"`
}

// IDSVariablesName is the name of the only IDSVariables.
const IDSVariablesName = "default"

// DeepCopy returns a copy of p that shares no memory with it.
func (p *IDSProfile) DeepCopy() *IDSProfile {
	if p == nil {
		return nil
	}
	c := *p
	c.Header = p.Header.deepCopy()
	c.Spec.AppliedTo = slices.Clone(p.Spec.AppliedTo)
	if p.Spec.WorkloadAware != nil {
		b := *p.Spec.WorkloadAware
		c.Spec.WorkloadAware = &b
	}
	f := &c.Spec.Signatures
	f.Classtypes = slices.Clone(f.Classtypes)
	f.ExcludeClasstypes = slices.Clone(f.ExcludeClasstypes)
	if f.Metadata != nil {
		m := make(map[string][]string, len(f.Metadata))
		for k, v := range f.Metadata {
			m[k] = slices.Clone(v)
		}
		f.Metadata = m
	}
	f.CVEs = slices.Clone(f.CVEs)
	f.SIDs = slices.Clone(f.SIDs)
	f.ExcludeSIDs = slices.Clone(f.ExcludeSIDs)
	f.SignatureSets = slices.Clone(f.SignatureSets)
	return &c
}

// DeepCopy returns a copy of v that shares no memory with it.
func (v *IDSVariables) DeepCopy() *IDSVariables {
	if v == nil {
		return nil
	}
	c := *v
	c.Header = v.Header.deepCopy()
	c.Spec.Address = maps.Clone(v.Spec.Address)
	c.Spec.Port = maps.Clone(v.Spec.Port)
	return &c
}

// cvePattern is how CVEs are written in a profile.
var cvePattern = regexp.MustCompile(`^CVE-[0-9]{4}-[0-9]{4,}$`)

// idsVarName is a Suricata variable name as suricata.yaml writes it.
var idsVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *checker) idsProfile(s *IDSProfileSpec) {
	c.names("spec.appliedTo", s.AppliedTo, "group")
	c.oneOf("spec.mode", s.Mode, IDSModes, "mode", true)
	c.oneOf("spec.preventAction", s.PreventAction, IDSPreventActions, "prevent action", false)
	if s.PreventAction != "" && s.Mode == IDSModeDetect {
		c.add("spec.preventAction", "preventAction %s needs mode prevent: in detect mode nothing is blocked", s.PreventAction)
	}
	f := &s.Signatures
	if f.MaxSeverity < 0 || f.MaxSeverity > 4 {
		c.add("spec.signatures.maxSeverity", "maxSeverity %d: want 1 (only the most severe) to 4, or leave it out for all", f.MaxSeverity)
	}
	for _, l := range []struct {
		field string
		list  []string
	}{{"classtypes", f.Classtypes}, {"excludeClasstypes", f.ExcludeClasstypes}} {
		for i, ct := range l.list {
			if strings.TrimSpace(ct) == "" || strings.ContainsAny(ct, " \t,;") {
				c.add(fmt.Sprintf("spec.signatures.%s[%d]", l.field, i), "%q is not a classtype (a word such as web-application-attack)", ct)
			}
		}
	}
	for _, k := range sortedKeys(f.Metadata) {
		field := joinKey("spec.signatures.metadata", k)
		if strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t,;") {
			c.add(field, "%q is not a metadata key (a word such as attack_target)", k)
		}
		if len(f.Metadata[k]) == 0 {
			c.add(field, "list at least one value; a key without values selects nothing")
		}
		for i, v := range f.Metadata[k] {
			if strings.TrimSpace(v) == "" {
				c.add(fmt.Sprintf("%s[%d]", field, i), "empty value")
			}
		}
	}
	for i, cve := range f.CVEs {
		if !cvePattern.MatchString(cve) {
			c.add(fmt.Sprintf("spec.signatures.cves[%d]", i), "%q is not a CVE id; write it as CVE-2021-44228", cve)
		}
	}
	for _, l := range []struct {
		field string
		list  []uint32
	}{{"sids", f.SIDs}, {"excludeSids", f.ExcludeSIDs}} {
		for i, sid := range l.list {
			if sid == 0 {
				c.add(fmt.Sprintf("spec.signatures.%s[%d]", l.field, i), "sid 0 names no signature")
			}
		}
	}
	for i, sid := range f.SIDs {
		if slices.Contains(f.ExcludeSIDs, sid) {
			c.add(fmt.Sprintf("spec.signatures.sids[%d]", i), "sid %d is also in excludeSids", sid)
		}
	}
	c.names("spec.signatures.signatureSets", f.SignatureSets, "signature set")
}

func (c *checker) idsVariables(name string, s *IDSVariablesSpec) {
	if name != "" && name != IDSVariablesName {
		c.add("metadata.name", "IDS variables are named %q, not %q: there is one set of them", IDSVariablesName, name)
	}
	fields := map[string]string{}
	for _, l := range []struct {
		field string
		vars  map[string]string
	}{{"spec.address", s.Address}, {"spec.port", s.Port}} {
		for _, k := range sortedKeys(l.vars) {
			if !idsVarName.MatchString(k) {
				c.add(joinKey(l.field, k), "%q is not a variable name: letters, digits and _, without the $", k)
				continue
			}
			fields[k] = joinKey(l.field, k)
		}
	}
	for k := range s.Address {
		if _, ok := s.Port[k]; ok {
			c.add(joinKey("spec.port", k), "%s is also an address variable; a name is one or the other", k)
		}
	}
	_, errs := s.vars(func(k string) bool { return fields[k] != "" })
	for _, k := range sortedKeys(errs) {
		c.add(fields[k], "%v", errs[k])
	}
}

// vars returns the default variables overridden by those of s that keep
// says to, and the error of each that does not read. Variables may name
// each other in any order: each is set once those it names are.
func (s *IDSVariablesSpec) vars(keep func(string) bool) (*rules.Vars, map[string]error) {
	v := rules.DefaultVars()
	pending := map[string]string{}
	for _, l := range []map[string]string{s.Address, s.Port} {
		for k, val := range l {
			if keep(k) {
				pending[k] = val
			}
		}
	}
	errs := map[string]error{}
	for len(pending) > 0 {
		progress := false
		clear(errs)
		for _, k := range sortedKeys(pending) {
			if err := v.Set(k, pending[k]); err != nil {
				errs[k] = err
				continue
			}
			delete(pending, k)
			progress = true
		}
		if !progress {
			break
		}
	}
	return v, errs
}

// IDSVars returns the variables signatures are read with: the rules
// package's defaults overridden by the set's IDSVariables, if any.
func (s *Set) IDSVars() (*rules.Vars, error) {
	iv := s.IDSVariables[IDSVariablesName]
	if iv == nil {
		return rules.DefaultVars(), nil
	}
	v, errs := iv.Spec.vars(func(string) bool { return true })
	for _, k := range sortedKeys(errs) {
		return nil, fmt.Errorf("IDSVariables %q: %s: %w", IDSVariablesName, k, errs[k])
	}
	return v, nil
}
