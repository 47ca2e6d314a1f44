package analysis

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// AlertEnds is how many IDS alerts were raised between two ends: a
// workload by its name, an end that is no workload by its address.
type AlertEnds struct {
	SrcWorkload, DstWorkload string
	Src, Dst                 netip.Addr
	Alerts                   uint64
}

// AddAlerts rolls alert counts up to m's level, as Map rolls up
// connections: each count goes to the edge between its ends' nodes and to
// both nodes (once when they are one), and to m's total. An edge or node
// that carried no flow in the window is added with its alerts only. scope
// keeps what Map's scope keeps: counts with an end in it. m must come from
// this analyzer's Map.
func (a *Analyzer) AddAlerts(m *Map, scope tagexpr.Expr, counts []AlertEnds) {
	places := a.place()
	edges := make(map[[2]string]int, len(m.Edges))
	for i, e := range m.Edges {
		edges[[2]string{e.From, e.To}] = i
	}
	nodes := make(map[string]int, len(m.Nodes))
	for i, n := range m.Nodes {
		nodes[n.ID] = i
	}
	// Members of the nodes added here: the endpoints their alerts name.
	added := map[string]map[int32]bool{}
	addNode := func(id string, ep int32, pl *Place, n uint64) {
		i, ok := nodes[id]
		if !ok {
			i = len(m.Nodes)
			nodes[id] = i
			m.Nodes = append(m.Nodes, newNode(id, m.Level, pl))
			added[id] = map[int32]bool{}
		}
		if members := added[id]; members != nil && !members[ep] {
			members[ep] = true
			m.Nodes[i].Members++
			if pl.Proposed {
				m.Nodes[i].Proposed++
			}
		}
		m.Nodes[i].Alerts += n
	}
	for _, c := range counts {
		si, ok := a.alertEndpoint(c.SrcWorkload, c.Src)
		if !ok {
			continue
		}
		di, ok := a.alertEndpoint(c.DstWorkload, c.Dst)
		if !ok {
			continue
		}
		sp, dp := a.endpointPlace(places, si), a.endpointPlace(places, di)
		if scope != nil && !inScope(scope, &sp) && !inScope(scope, &dp) {
			continue
		}
		from, to := sp.ID(m.Level), dp.ID(m.Level)
		addNode(from, si, &sp, c.Alerts)
		if to != from {
			addNode(to, di, &dp, c.Alerts)
		}
		k := [2]string{from, to}
		i, ok := edges[k]
		if !ok {
			i = len(m.Edges)
			edges[k] = i
			m.Edges = append(m.Edges, Edge{From: from, To: to})
		}
		m.Edges[i].Alerts += c.Alerts
		m.Alerts += c.Alerts
	}
	if len(added) > 0 {
		slices.SortFunc(m.Nodes, func(x, y Node) int { return strings.Compare(x.ID, y.ID) })
	}
}

// alertEndpoint is endpoint for an alert's end, which names a workload
// the inventory may no longer have and then has no address to fall back
// on.
func (a *Analyzer) alertEndpoint(name string, addr netip.Addr) (int32, bool) {
	if name != "" {
		if i, ok := a.byName[name]; ok {
			return i, true
		}
	}
	if !addr.IsValid() {
		return 0, false
	}
	return a.endpoint("", addr), true
}
