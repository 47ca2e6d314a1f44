package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// HostInfo is a host as the registry and its live stream show it.
type HostInfo struct {
	Name            string
	CertFingerprint string
	Enrolled        time.Time
	// Revoked is zero unless the host's certificate was revoked.
	Revoked time.Time
	// Connected is true while the host has a Watch stream open.
	Connected bool
	// LastSeen is when the host last talked to the manager (now, while
	// connected); zero if never.
	LastSeen time.Time
	// RealizedRevision is the revision of the desired state the host's
	// kernel holds; DesiredRevision that of the newest desired state the
	// host was sent. Equal states (the same payload) at later revisions
	// are not resent, so a host stays at its DesiredRevision while later
	// revisions do not concern it.
	RealizedRevision int64
	DesiredRevision  int64
	// InSync is true when the host is connected and holds the newest
	// desired state computed for it, without error.
	InSync bool
	// LastError is why the host's latest apply failed, or, prefixed
	// "manager: ", why its desired state could not be computed.
	LastError string
	// Workloads counts the inventory's workloads on this host.
	Workloads int
}

// Published returns the latest policy revision as last read.
func (cp *ControlPlane) Published() int64 { return cp.published.Load() }

// Hosts lists every enrolled host, by name.
func (cp *ControlPlane) Hosts(ctx context.Context) ([]HostInfo, int64, error) {
	hosts, err := cp.cfg.Store.Hosts(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("controlplane: list hosts: %w", err)
	}
	wls, err := cp.cfg.Store.Workloads(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("controlplane: list hosts: %w", err)
	}
	published := cp.readPublished(ctx)
	perHost := map[string]int{}
	for _, w := range wls {
		if w.Spec.Host != "" {
			perHost[w.Spec.Host]++
		}
	}
	now := cp.cfg.Now()
	out := make([]HostInfo, 0, len(hosts))
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, h := range hosts {
		st := h.HostStatus
		info := HostInfo{
			Name: h.Name, CertFingerprint: h.CertFingerprint, Enrolled: h.Enrolled,
			Revoked: h.Revoked, Workloads: perHost[h.Name],
		}
		if mem := cp.hosts[h.Name]; mem != nil {
			if mem.statusKnown {
				st = mem.status
			}
			if mem.status.LastSeen.After(st.LastSeen) {
				st.LastSeen = mem.status.LastSeen
			}
			info.DesiredRevision = mem.desiredRevision
			if mem.session != nil {
				info.Connected = true
				st.LastSeen = now
				info.InSync = st.LastError == "" && len(mem.desiredDigest) > 0 && bytes.Equal(mem.desiredDigest, st.RealizedDigest)
			}
		}
		info.LastSeen = st.LastSeen
		info.RealizedRevision, info.LastError = st.RealizedRevision, st.LastError
		if mem := cp.hosts[h.Name]; mem != nil && mem.spanErr != "" {
			info.LastError, info.InSync = "manager: compute desired state: "+mem.spanErr, false
		}
		out = append(out, info)
	}
	return out, published, nil
}
