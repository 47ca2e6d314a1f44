package controlplane

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/store"
)

// Facts the control plane sets on workloads it discovers.
const (
	// FactSource is "agent" on workloads an agent's report created; those
	// are deleted when their interface disappears. Workloads declared by
	// an operator are only detached from the host, keeping their tags.
	FactSource      = "source"
	SourceAgent     = "agent"
	FactMAC         = "mac"
	FactIfaceKind   = "interfaceKind"
	maxWorkloadName = 253
)

// reportWorkloads turns a host's complete interface report into inventory,
// in one commit with its audit entries.
func (cp *ControlPlane) reportWorkloads(ctx context.Context, host string, rep *agentapi.WorkloadReport) (*agentapi.ReportWorkloadsResponse, error) {
	if l := cp.cfg.InventoryLock; l != nil {
		l.Lock()
		defer l.Unlock()
	}
	old, err := cp.cfg.Store.Workloads(ctx)
	if err != nil {
		return nil, err
	}
	plan := planInventory(host, old, rep.GetInterfaces(), cp.log.Warn)
	resp := &agentapi.ReportWorkloadsResponse{Created: plan.created, Updated: plan.updated, Deleted: plan.deleted, Workloads: plan.bound}
	if len(plan.upserts) == 0 && len(plan.deletes) == 0 {
		return resp, nil
	}
	before := policy.NewSet()
	for _, w := range old {
		before.Workloads[w.Metadata.Name] = w
	}
	after := before.Clone()
	for _, w := range plan.upserts {
		after.Workloads[w.Metadata.Name] = w
	}
	for _, n := range plan.deletes {
		delete(after.Workloads, n)
	}
	actor := agentActor(host)
	var audit []store.AuditEntry
	for _, ch := range policy.DiffSets(before, after) {
		audit = append(audit, store.AuditEntry{Actor: actor, Action: "discover", Object: string(ch.Kind) + "/" + ch.Name, Diff: ch.Diff})
	}
	if _, err := cp.cfg.Store.Commit(ctx, store.Commit{
		Author: actor, Summary: "workloads discovered on " + host,
		UpsertWorkloads: plan.upserts, DeleteWorkloads: plan.deletes, Audit: audit,
	}); err != nil {
		return nil, err
	}
	cp.log.Info("inventory updated from agent", "host", host, "created", plan.created, "updated", plan.updated, "deleted", plan.deletes)
	cp.Changed()
	return resp, nil
}

type inventoryPlan struct {
	upserts                   []*policy.Workload
	deletes                   []string
	created, updated, deleted []string
	// bound names the workload of each reported interface that has one.
	bound map[string]string
}

// planInventory computes the inventory changes of one host's report.
//
// Each reported interface with addresses is matched to the workload already
// bound to it (same host and interface), else to a workload holding one of
// its addresses (declared by an operator, or moved from another host), else
// a workload "<host>-<interface>" is created. Workloads bound to an
// interface of this host that the report no longer has are deleted when an
// agent created them, and detached (host and interface cleared) when an
// operator declared them, so their tags survive a move.
func planInventory(host string, old []*policy.Workload, ifaces []*agentapi.Interface, warn func(string, ...any)) inventoryPlan {
	type bound struct{ host, iface string }
	byIface := map[bound]*policy.Workload{}
	byIP := map[netip.Addr]*policy.Workload{}
	names := map[string]bool{}
	for _, w := range old {
		names[w.Metadata.Name] = true
		if w.Spec.Host != "" && w.Spec.Interface != "" {
			byIface[bound{w.Spec.Host, w.Spec.Interface}] = w
		}
		for _, s := range w.Spec.IPs {
			if a, err := netip.ParseAddr(s); err == nil {
				byIP[a.Unmap()] = w
			}
		}
	}

	plan := inventoryPlan{bound: map[string]string{}}
	claimed := map[string]bool{} // workload names bound by this report
	present := map[string]bool{} // interface names in the report
	ifaces = slices.Clone(ifaces)
	slices.SortFunc(ifaces, func(a, b *agentapi.Interface) int { return strings.Compare(a.GetName(), b.GetName()) })
	for _, ifc := range ifaces {
		present[ifc.GetName()] = true
		ips := cleanIPs(ifc.GetIps())
		if ifc.GetName() == "" || len(ips) == 0 {
			// Without an address it cannot be a policy endpoint yet;
			// a workload already bound to it stays as it is.
			continue
		}
		w := byIface[bound{host, ifc.GetName()}]
		if w == nil || claimed[w.Metadata.Name] {
			w = nil
			for _, ip := range ips {
				if c := byIP[netip.MustParseAddr(ip)]; c != nil && !claimed[c.Metadata.Name] {
					w = c
					break
				}
			}
		}
		var next *policy.Workload
		if w == nil {
			name := uniqueName(workloadName(host, ifc.GetName()), names)
			names[name] = true
			next = &policy.Workload{
				Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name}},
				Spec:   policy.WorkloadSpec{Facts: map[string]string{FactSource: SourceAgent}},
			}
		} else {
			next = cloneWorkload(w)
		}
		next.Spec.Host, next.Spec.Interface = host, ifc.GetName()
		if next.Spec.Facts[FactSource] == SourceAgent {
			next.Spec.IPs = ips
		} else {
			next.Spec.IPs = unionIPs(next.Spec.IPs, ips)
		}
		setFact(next, FactMAC, ifc.GetMac())
		setFact(next, FactIfaceKind, kindName(ifc.GetKind()))
		if errs := policy.ValidateObject(policy.Document{Object: next}); len(errs) > 0 {
			warn("reported interface is not a valid workload", "host", host, "interface", ifc.GetName(), "err", errs.Error())
			continue
		}
		claimed[next.Metadata.Name] = true
		plan.bound[ifc.GetName()] = next.Metadata.Name
		switch {
		case w == nil:
			plan.upserts = append(plan.upserts, next)
			plan.created = append(plan.created, next.Metadata.Name)
		case !sameWorkload(w, next):
			plan.upserts = append(plan.upserts, next)
			plan.updated = append(plan.updated, next.Metadata.Name)
		}
	}

	for _, w := range old {
		if w.Spec.Host != host || w.Spec.Interface == "" || present[w.Spec.Interface] || claimed[w.Metadata.Name] {
			continue
		}
		if w.Spec.Facts[FactSource] == SourceAgent {
			plan.deletes = append(plan.deletes, w.Metadata.Name)
			plan.deleted = append(plan.deleted, w.Metadata.Name)
			continue
		}
		next := cloneWorkload(w)
		next.Spec.Host, next.Spec.Interface = "", ""
		delete(next.Spec.Facts, FactMAC)
		delete(next.Spec.Facts, FactIfaceKind)
		if len(next.Spec.Facts) == 0 {
			next.Spec.Facts = nil
		}
		plan.upserts = append(plan.upserts, next)
		plan.updated = append(plan.updated, next.Metadata.Name)
	}
	return plan
}

// cleanIPs keeps the valid addresses, canonical, unique, in order.
func cleanIPs(in []string) []string {
	var out []string
	seen := map[netip.Addr]bool{}
	for _, s := range in {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.IsUnspecified() {
			continue
		}
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			out = append(out, a.String())
		}
	}
	return out
}

func unionIPs(have, add []string) []string {
	return cleanIPs(append(slices.Clone(have), add...))
}

func setFact(w *policy.Workload, k, v string) {
	if v == "" {
		delete(w.Spec.Facts, k)
		return
	}
	if w.Spec.Facts == nil {
		w.Spec.Facts = map[string]string{}
	}
	w.Spec.Facts[k] = v
}

func kindName(k agentapi.InterfaceKind) string {
	switch k {
	case agentapi.InterfaceKind_INTERFACE_KIND_VETH:
		return "veth"
	case agentapi.InterfaceKind_INTERFACE_KIND_TAP:
		return "tap"
	case agentapi.InterfaceKind_INTERFACE_KIND_OTHER:
		return "other"
	}
	return ""
}

func cloneWorkload(w *policy.Workload) *policy.Workload {
	c := *w
	c.Metadata.Labels = maps.Clone(w.Metadata.Labels)
	c.Spec.IPs = slices.Clone(w.Spec.IPs)
	c.Spec.Tags = maps.Clone(w.Spec.Tags)
	c.Spec.Facts = maps.Clone(w.Spec.Facts)
	return &c
}

func sameWorkload(a, b *policy.Workload) bool {
	return a.Spec.Host == b.Spec.Host && a.Spec.Interface == b.Spec.Interface &&
		slices.Equal(a.Spec.IPs, b.Spec.IPs) && maps.Equal(a.Spec.Facts, b.Spec.Facts)
}

// workloadName is "<host>-<interface>" in the policy naming rules:
// interface names may hold capitals, "_" and "@", which become lowercase
// and "-".
func workloadName(host, iface string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(iface) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-.")
	if s == "" {
		s = "if"
	}
	name := host + "-" + s
	if len(name) > maxWorkloadName-4 {
		name = strings.TrimRight(name[:maxWorkloadName-4], "-.")
	}
	return name
}

func uniqueName(base string, taken map[string]bool) string {
	if !taken[base] {
		return base
	}
	for i := 2; ; i++ {
		if n := fmt.Sprintf("%s-%d", base, i); !taken[n] {
			return n
		}
	}
}
