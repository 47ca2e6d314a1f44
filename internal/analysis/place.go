package analysis

import (
	"net/netip"
	"strings"

	"github.com/bulkhead/bulkhead/internal/discover"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// Untagged names a level a workload has no tag (and no proposal) for.
const Untagged = "untagged"

// Ranges an external address is grouped by above the workload level.
const (
	RangePrivate   = "private" // RFC 1918, 100.64/10, fc00::/7
	RangeInternet  = "internet"
	RangeLoopback  = "loopback"
	RangeLinkLocal = "link-local"
	RangeMulticast = "multicast"
)

// ExternalPrefix starts the id of an external node above the workload
// level: "external:internet".
const ExternalPrefix = "external:"

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// RangeOf names the well-known range of an address that is no workload.
func RangeOf(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return RangeLoopback
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return RangeLinkLocal
	case a.IsMulticast():
		return RangeMulticast
	case a.IsPrivate(), cgnat.Contains(a), a.IsUnspecified():
		return RangePrivate
	}
	return RangeInternet
}

// Place is where one endpoint sits in the hierarchy.
type Place struct {
	// Env, App and Tier are the workload's tags, or discovery's proposal
	// where a tag is missing; "" when neither says. Empty for externals.
	Env, App, Tier string
	// Workload is the workload's name; "" for an external address.
	Workload string
	// Proposed is true when discovery filled the app or tier (or env).
	Proposed bool
	// Tags are the workload's tags with the proposal merged in.
	Tags map[string]string
	// Addr and Range describe an external endpoint.
	Addr  netip.Addr
	Range string
}

// External reports whether the endpoint is no workload.
func (p *Place) External() bool { return p.Workload == "" }

func orUntagged(s string) string {
	if s == "" {
		return Untagged
	}
	return s
}

// ID is the endpoint's node at a level: "prod" (env), "prod/shop" (app),
// "prod/shop/web" (tier), "web-1" (workload). A missing env is left out of
// the app and tier ids ("shop/web"); a missing app or tier is "untagged".
// Externals are their address at the workload level and their range
// above it ("external:internet").
func (p *Place) ID(l Level) string {
	if p.External() {
		if l == LevelWorkload {
			return p.Addr.String()
		}
		return ExternalPrefix + p.Range
	}
	var parts []string
	switch l {
	case LevelEnv:
		return orUntagged(p.Env)
	case LevelApp:
		parts = []string{p.Env, orUntagged(p.App)}
	case LevelTier:
		parts = []string{p.Env, orUntagged(p.App), orUntagged(p.Tier)}
	default:
		return p.Workload
	}
	if parts[0] == "" {
		parts = parts[1:]
	}
	return strings.Join(parts, "/")
}

// place computes the places of the workloads, asking discovery for those
// without an app or tier; it runs once, after the records are in.
func (a *Analyzer) place() []Place {
	if a.places != nil {
		return a.places
	}
	places := make([]Place, len(a.workloads))
	needs := false
	for i, w := range a.workloads {
		t := w.Spec.Tags
		places[i] = Place{Env: t[discover.TagEnv], App: t[discover.TagApp], Tier: t[discover.TagTier],
			Workload: w.Metadata.Name, Tags: t}
		if places[i].App == "" || places[i].Tier == "" {
			needs = true
		}
	}
	if needs && !a.opts.NoDiscovery {
		for _, p := range discover.Propose(a.workloads, a.discoveryInput(), discover.Options{}) {
			i, ok := a.byName[p.Workload]
			if !ok {
				continue
			}
			pl := &places[i]
			merged := make(map[string]string, len(pl.Tags)+len(p.Tags))
			for k, v := range pl.Tags {
				merged[k] = v
			}
			for _, f := range []struct {
				key string
				dst *string
			}{{discover.TagEnv, &pl.Env}, {discover.TagApp, &pl.App}, {discover.TagTier, &pl.Tier}} {
				if v := p.Tags[f.key]; *f.dst == "" && v != "" {
					*f.dst = v
					merged[f.key] = v
					pl.Proposed = true
				}
			}
			pl.Tags = merged
		}
	}
	a.places = places
	return places
}

// discoveryInput is the flow graph between workloads, one record per
// (client, server, service) that carried a connection. Discovery thus sees
// the shape of the traffic, not its volume: a week of records need not be
// kept to place a handful of untagged workloads.
func (a *Analyzer) discoveryInput() []flow.Record {
	var out []flow.Record
	n := int32(len(a.workloads))
	for k, e := range a.edges {
		if k.src >= n || k.dst >= n || k.src == k.dst {
			continue
		}
		src, dst := a.workloads[k.src].Metadata.Name, a.workloads[k.dst].Metadata.Name
		for _, s := range e.services {
			if s.conns == 0 || isICMP(s.svc.proto) {
				continue
			}
			out = append(out, flow.Record{Kind: flow.KindEnd, SrcWorkload: src, DstWorkload: dst,
				Proto: s.svc.proto, DstPort: s.svc.port, Verdict: flow.Allow})
		}
	}
	return out
}

// endpointPlace is the place of endpoint i (a workload index, or an
// external after them).
func (a *Analyzer) endpointPlace(places []Place, i int32) Place {
	if int(i) < len(places) {
		return places[i]
	}
	addr := a.ext[int(i)-len(places)]
	return Place{Addr: addr, Range: RangeOf(addr)}
}

// workloadAddrs indexes the inventory: single addresses in a map, prefixes
// (rare) in a list checked once per new address.
func (a *Analyzer) indexWorkloads(ws []*policy.Workload) {
	for i, w := range ws {
		a.byName[w.Metadata.Name] = int32(i)
		for _, s := range w.Spec.IPs {
			if addr, err := netip.ParseAddr(s); err == nil {
				a.byAddr[addr.Unmap()] = int32(i)
			} else if p, err := netip.ParsePrefix(s); err == nil {
				if p.IsSingleIP() {
					a.byAddr[p.Addr().Unmap()] = int32(i)
				} else {
					a.prefixes = append(a.prefixes, wlPrefix{p.Masked(), int32(i)})
				}
			}
		}
	}
}
