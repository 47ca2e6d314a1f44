package analysis

import (
	"net/netip"
	"testing"

	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// shopAlerts: an outsider attacks both web servers, web1 attacks the api,
// something attacks db1 with no flow in the window, and an alert names a
// workload the inventory no longer has.
func shopAlerts() []AlertEnds {
	ip := netip.MustParseAddr
	return []AlertEnds{
		{Src: ip("203.0.113.7"), DstWorkload: "web1", Alerts: 3},
		{Src: ip("203.0.113.7"), DstWorkload: "web2", Alerts: 2},
		{SrcWorkload: "web1", DstWorkload: "api1", Alerts: 4},
		{Src: ip("10.9.9.9"), DstWorkload: "db1", Alerts: 5},
		{SrcWorkload: "gone", DstWorkload: "db1", Alerts: 100},
		{SrcWorkload: "bweb1", DstWorkload: "bapi1", Alerts: 7},
	}
}

func TestAlertsRollUp(t *testing.T) {
	for _, tc := range []struct {
		level Level
		scope string
		edges map[[2]string]uint64
		nodes map[string]uint64
		total uint64
	}{
		{LevelWorkload, "", map[[2]string]uint64{
			{"203.0.113.7", "web1"}: 3, {"203.0.113.7", "web2"}: 2, {"web1", "api1"}: 4,
			{"10.9.9.9", "db1"}: 5, {"bweb1", "bapi1"}: 7, {"api1", "db1"}: 0,
		}, map[string]uint64{"web1": 7, "web2": 2, "api1": 4, "db1": 5, "203.0.113.7": 5, "10.9.9.9": 5, "cache1": 0}, 21},
		{LevelTier, "", map[[2]string]uint64{
			// Both web servers' alerts on one edge, as their connections.
			{"external:internet", "prod/shop/web"}: 5, {"prod/shop/web", "prod/shop/api"}: 4,
			{"external:private", "prod/shop/db"}: 5, {"prod/billing/web", "prod/billing/api"}: 7,
		}, map[string]uint64{"prod/shop/web": 9, "prod/shop/db": 5, "external:private": 5}, 21},
		{LevelApp, "", map[[2]string]uint64{
			// Inside a node: its alerts counted once on the node.
			{"prod/shop", "prod/shop"}: 4, {"external:internet", "prod/shop"}: 5,
		}, map[string]uint64{"prod/shop": 14, "prod/billing": 7}, 21},
		{LevelTier, `app == "billing"`, map[[2]string]uint64{
			{"prod/billing/web", "prod/billing/api"}: 7,
		}, map[string]uint64{"prod/billing/web": 7, "prod/billing/api": 7}, 7},
	} {
		t.Run(tc.level.String()+" "+tc.scope, func(t *testing.T) {
			a := analyze(t, Options{NoDiscovery: true}, shopHistory().recs)
			var scope tagexpr.Expr
			if tc.scope != "" {
				var err error
				if scope, err = tagexpr.Parse(tc.scope); err != nil {
					t.Fatal(err)
				}
			}
			m := a.Map(tc.level, scope)
			before := len(m.Edges)
			a.AddAlerts(m, scope, shopAlerts())
			for k, want := range tc.edges {
				if got := edgeOf(t, m, k[0], k[1]).Alerts; got != want {
					t.Errorf("edge %s -> %s: %d alerts, want %d", k[0], k[1], got, want)
				}
			}
			for id, want := range tc.nodes {
				if got := nodeOf(t, m, id).Alerts; got != want {
					t.Errorf("node %s: %d alerts, want %d", id, got, want)
				}
			}
			if m.Alerts != tc.total {
				t.Errorf("total %d alerts, want %d", m.Alerts, tc.total)
			}
			if tc.level == LevelWorkload {
				// Alerts add to an edge's traffic, never change it.
				if e := edgeOf(t, m, "10.9.9.9", "db1"); e.Drops != 1 || e.Connections != 0 {
					t.Errorf("alert edge lost its traffic: %+v", e.Traffic)
				}
				if len(m.Edges) != before+1 {
					t.Errorf("%d edges before alerts, %d after: want one more (203.0.113.7 -> web2 had no flow)", before, len(m.Edges))
				}
			}
		})
	}
}

// TestAlertsWithoutFlows: an alert between ends that exchanged no flow in
// the window adds its edge and nodes, placed like any other.
func TestAlertsWithoutFlows(t *testing.T) {
	a := analyze(t, Options{NoDiscovery: true}, nil)
	m := a.Map(LevelTier, nil)
	if len(m.Edges) != 0 || len(m.Nodes) != 0 {
		t.Fatalf("empty history mapped to %+v", m)
	}
	ip := netip.MustParseAddr
	a.AddAlerts(m, nil, []AlertEnds{
		{Src: ip("203.0.113.7"), DstWorkload: "web1", Alerts: 2},
		{Src: ip("203.0.113.8"), DstWorkload: "web2", Alerts: 1},
	})
	e := edgeOf(t, m, "external:internet", "prod/shop/web")
	if e.Alerts != 3 || e.Records() != 0 {
		t.Errorf("edge %+v", e)
	}
	n := nodeOf(t, m, "prod/shop/web")
	if n.Alerts != 3 || n.Members != 2 || n.Env != "prod" || n.App != "shop" || n.Tier != "web" {
		t.Errorf("node %+v", n)
	}
	if x := nodeOf(t, m, "external:internet"); !x.External || x.Members != 2 {
		t.Errorf("external node %+v", x)
	}
	if m.Nodes[0].ID > m.Nodes[1].ID {
		t.Errorf("nodes not sorted: %s, %s", m.Nodes[0].ID, m.Nodes[1].ID)
	}
}
