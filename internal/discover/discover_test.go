package discover

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// world builds workloads and the flows between them.
type world struct {
	workloads []*policy.Workload
	ips       map[string]netip.Addr
	flows     []flow.Record
	next      int
}

func newWorld() *world { return &world{ips: map[string]netip.Addr{}} }

// add adds a workload; tags is "app/tier/env" or "" for none.
func (w *world) add(name, tags string) {
	ip := netip.AddrFrom4([4]byte{10, 77, byte(len(w.workloads) / 250), byte(len(w.workloads)%250 + 1)})
	wl := &policy.Workload{}
	wl.Kind = policy.KindWorkload
	wl.Metadata.Name = name
	wl.Spec.IPs = []string{ip.String()}
	if tags != "" {
		var app, tier, env string
		fmt.Sscanf(tags, "%s %s %s", &app, &tier, &env)
		wl.Spec.Tags = map[string]string{TagApp: app, TagTier: tier}
		if env != "" {
			wl.Spec.Tags[TagEnv] = env
		}
	}
	w.ips[name] = ip
	w.workloads = append(w.workloads, wl)
}

// conn adds n connections from src to dst's port, each as an update and an
// end with the same ID, as the agent reports them. Only the source end is
// named, as on a host that runs only the source.
func (w *world) conn(src, dst string, port uint16, n int) {
	for range n {
		w.next++
		id := fmt.Sprintf("h/%d", w.next)
		r := flow.Record{ID: id, Kind: flow.KindUpdate, Src: w.ips[src], Dst: w.ips[dst],
			Proto: 6, SrcPort: 40000, DstPort: port, SrcWorkload: src,
			SrcBytes: 500, DstBytes: 1000, Verdict: flow.Allow}
		end := r
		end.Kind, end.SrcBytes, end.DstBytes = flow.KindEnd, 800, 4000
		w.flows = append(w.flows, r, end)
	}
}

// shop mimics the lab's shop scenario, plus a second application (billing)
// with an untagged cache of its own.
func shop() *world {
	w := newWorld()
	for _, x := range [][2]string{
		{"web1", "shop web prod"}, {"web2", "shop web prod"}, {"api1", "shop api prod"},
		{"db1", "shop db prod"}, {"cache1", ""}, {"report1", ""},
		{"dns1", "infra dns prod"}, {"dir1", "infra directory prod"}, {"hr1", "hr web prod"},
		{"jump1", "infra admin prod"}, {"mon1", "infra monitoring prod"}, {"rdsh1", "vdi desktop prod"},
		{"shopper1", "clients client prod"}, {"shopper2", ""}, {"partner1", "partner client prod"},
		{"legacy1", ""}, {"attacker", "ci build dev"},
		{"bweb1", "billing web prod"}, {"bapi1", "billing api prod"}, {"bapi2", "billing api prod"},
		{"bdb1", "billing db prod"}, {"bcache1", ""},
	} {
		w.add(x[0], x[1])
	}
	for _, web := range []string{"web1", "web2"} {
		w.conn(web, "api1", 8080, 200)
		w.conn("shopper1", web, 443, 60)
		w.conn("shopper2", web, 443, 30)
		w.conn("shopper2", web, 80, 10)
		w.conn("jump1", web, 22, 3)
	}
	w.conn("shopper1", "web1", 80, 20)
	w.conn("legacy1", "web1", 8443, 8)
	w.conn("partner1", "api1", 8080, 100)
	w.conn("api1", "db1", 5432, 300)
	w.conn("api1", "cache1", 6379, 400)
	w.conn("report1", "db1", 5432, 10)
	w.conn("report1", "cache1", 6379, 10)
	w.conn("web1", "dir1", 389, 20)
	w.conn("web1", "dns1", 53, 30)
	w.conn("mon1", "dns1", 53, 50)
	w.conn("mon1", "dir1", 389, 10)
	w.conn("mon1", "web1", 443, 10)
	w.conn("rdsh1", "hr1", 80, 30)
	w.conn("rdsh1", "web1", 443, 20)
	w.conn("rdsh1", "dir1", 389, 30)
	for _, t := range []string{"api1", "db1", "hr1"} {
		w.conn("jump1", t, 22, 3)
	}
	for _, api := range []string{"bapi1", "bapi2"} {
		w.conn("bweb1", api, 8080, 150)
		w.conn(api, "bdb1", 5432, 200)
		w.conn(api, "bcache1", 6379, 250)
	}
	w.conn("bweb1", "dns1", 53, 10)
	w.conn("bapi1", "api1", 8080, 2) // one cross-app call
	// Denied traffic says nothing about what a workload is.
	for _, t := range []string{"web1", "api1", "db1", "cache1", "bdb1"} {
		for p := uint16(1); p < 200; p++ {
			w.flows = append(w.flows, flow.Record{ID: fmt.Sprintf("drop/%s/%d", t, p), Kind: flow.KindDrop,
				Src: w.ips["attacker"], Dst: w.ips[t], Proto: 6, DstPort: p, SrcPackets: 1, Verdict: flow.Drop})
		}
	}
	return w
}

func byName(ps []Proposal) map[string]Proposal {
	m := map[string]Proposal{}
	for _, p := range ps {
		m[p.Workload] = p
	}
	return m
}

func TestProposeShop(t *testing.T) {
	w := shop()
	got := byName(Propose(w.workloads, w.flows, Options{}))
	tests := []struct {
		name       string
		app, tier  string // "" app: not checked
		env        string
		minConf    float64
		sameCommAs string
	}{
		{"cache1", "shop", "cache", "prod", 0.5, "api1"},
		{"report1", "shop", "batch", "prod", 0.3, "db1"},
		{"shopper2", "clients", "client", "prod", 0.5, ""},
		{"legacy1", "shop", "client", "", 0, "web1"},
		{"bcache1", "billing", "cache", "prod", 0.5, "bapi1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := got[tc.name]
			if !ok {
				t.Fatalf("no proposal for %s", tc.name)
			}
			t.Logf("%s: %v conf %.2f community %d %v; app: %s; tier: %s", p.Workload, p.Tags, p.Confidence,
				p.Community.ID, p.Community.Members, p.Evidence.AppFrom, p.Evidence.TierFrom)
			if tc.app != "" && p.Tags[TagApp] != tc.app {
				t.Errorf("app = %q, want %q", p.Tags[TagApp], tc.app)
			}
			if p.Tags[TagTier] != tc.tier {
				t.Errorf("tier = %q, want %q", p.Tags[TagTier], tc.tier)
			}
			if tc.env != "" && p.Tags[TagEnv] != tc.env {
				t.Errorf("env = %q, want %q", p.Tags[TagEnv], tc.env)
			}
			if p.Confidence < tc.minConf || p.Confidence > 1 {
				t.Errorf("confidence %.2f, want in [%.2f, 1]", p.Confidence, tc.minConf)
			}
			if tc.sameCommAs != "" && !contains(p.Community.Members, tc.sameCommAs) {
				t.Errorf("community %v does not hold %s", p.Community.Members, tc.sameCommAs)
			}
			if len(p.Evidence.Peers) == 0 || p.Evidence.TierFrom == "" || p.Evidence.AppFrom == "" {
				t.Errorf("evidence missing: %+v", p.Evidence)
			}
		})
	}
	if len(got) != len(tests) {
		t.Errorf("%d proposals, want %d (only the untagged)", len(got), len(tests))
	}
	if c, b := got["cache1"].Community, got["bcache1"].Community; c.ID == b.ID {
		t.Errorf("shop and billing share community %d: %v", c.ID, c.Members)
	}
	if ev := got["cache1"].Evidence; len(ev.Serves) != 1 || ev.Serves[0].Port != 6379 || ev.Serves[0].Flows != 410 || ev.Serves[0].Clients != 2 {
		t.Errorf("cache1 serves %+v, want tcp/6379 with 410 flows from 2 clients (drops ignored, updates merged)", ev.Serves)
	}
}

func TestProposeIncludeTagged(t *testing.T) {
	w := shop()
	got := byName(Propose(w.workloads, w.flows, Options{IncludeTagged: true}))
	if len(got) != len(w.workloads)-1 {
		t.Errorf("%d proposals, want one per workload but the attacker, whose flows were all dropped (%d)", len(got), len(w.workloads)-1)
	}
	for name, want := range map[string][2]string{"db1": {"shop", "db"}, "api1": {"shop", "api"}, "bdb1": {"billing", "db"}} {
		if p := got[name]; p.Tags[TagApp] != want[0] || p.Tags[TagTier] != want[1] {
			t.Errorf("%s: %v, want app %s tier %s", name, p.Tags, want[0], want[1])
		}
	}
}

func TestProposeDeterministic(t *testing.T) {
	w := shop()
	a := Propose(w.workloads, w.flows, Options{Seed: 7, Weight: WeightBytes})
	for range 5 {
		if b := Propose(w.workloads, w.flows, Options{Seed: 7, Weight: WeightBytes}); !reflect.DeepEqual(a, b) {
			t.Fatalf("two runs differ:\n%+v\n%+v", a, b)
		}
	}
}

func TestProposeNoFlows(t *testing.T) {
	w := shop()
	if got := Propose(w.workloads, nil, Options{}); len(got) != 0 {
		t.Errorf("proposals without flows: %+v", got)
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// bigWorld is apps applications of 20 workloads each (web, api, db, cache
// tiers and clients), a tenth untagged, with flows mostly inside an app.
func bigWorld(apps, nflows int) *world {
	w := newWorld()
	rng := rand.New(rand.NewPCG(1, 2))
	tiers := []struct {
		tier string
		n    int
		port uint16
	}{{"web", 4, 443}, {"api", 4, 8080}, {"db", 2, 5432}, {"cache", 2, 6379}, {"client", 8, 0}}
	type member struct {
		name string
		tier int
	}
	var all [][]member
	for a := range apps {
		var ms []member
		for ti, t := range tiers {
			for k := range t.n {
				name := fmt.Sprintf("a%d-%s%d", a, t.tier, k)
				tags := fmt.Sprintf("app%d %s prod", a, t.tier)
				if rng.IntN(10) == 0 {
					tags = ""
				}
				w.add(name, tags)
				ms = append(ms, member{name, ti})
			}
		}
		all = append(all, ms)
	}
	pick := func(ms []member, tier int) string {
		for {
			m := ms[rng.IntN(len(ms))]
			if m.tier == tier {
				return m.name
			}
		}
	}
	for w.next < nflows/2 {
		ms := all[rng.IntN(len(all))]
		// client -> web -> api -> db|cache
		switch rng.IntN(4) {
		case 0:
			w.conn(pick(ms, 4), pick(ms, 0), 443, 1)
		case 1:
			w.conn(pick(ms, 0), pick(ms, 1), 8080, 1)
		case 2:
			w.conn(pick(ms, 1), pick(ms, 2), 5432, 1)
		default:
			other := ms
			if rng.IntN(50) == 0 {
				other = all[rng.IntN(len(all))]
			}
			w.conn(pick(ms, 1), pick(other, 3), 6379, 1)
		}
	}
	return w
}

func TestProposeBig(t *testing.T) {
	w := bigWorld(20, 20000)
	ps := Propose(w.workloads, w.flows, Options{})
	right := 0
	for _, p := range ps {
		var tier string
		var app int
		var rest string
		fmt.Sscanf(p.Workload, "a%d-%s", &app, &rest)
		for _, x := range []string{"web", "api", "db", "cache", "client"} {
			if len(rest) > len(x) && rest[:len(x)] == x {
				tier = x
			}
		}
		if p.Tags[TagApp] == fmt.Sprintf("app%d", app) && p.Tags[TagTier] == tier {
			right++
		} else {
			t.Logf("%s: %v (%s; %s)", p.Workload, p.Tags, p.Evidence.AppFrom, p.Evidence.TierFrom)
		}
	}
	t.Logf("%d of %d proposals right", right, len(ps))
	if len(ps) == 0 || float64(right) < 0.9*float64(len(ps)) {
		t.Errorf("%d of %d proposals right, want 90%%", right, len(ps))
	}
}

func BenchmarkPropose(b *testing.B) {
	w := bigWorld(100, 200000) // 2,000 workloads, 200k records
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Propose(w.workloads, w.flows, Options{})
	}
	b.ReportMetric(float64(len(w.flows)), "records")
	b.ReportMetric(float64(len(w.workloads)), "workloads")
}
