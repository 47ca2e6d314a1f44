package analysis

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// benchWorld is a data center of apps x tiers x replicas workloads, a
// policy with one rule per tier pair, and a ring of records: a week of
// history is mostly the same flows again, and the store hands the records
// over one at a time, so a ring of distinct records stands for a million.
type benchWorld struct {
	wls   []*policy.Workload
	ev    *eval.Evaluator
	cand  *eval.Evaluator
	ring  []flow.Record
	flows int
}

func newBenchWorld(tb testing.TB, apps, replicas, ringSize int) *benchWorld {
	tiers := []struct {
		name string
		port uint16
	}{{"web", 443}, {"api", 8080}, {"db", 5432}, {"cache", 6379}}
	w := &benchWorld{}
	var rules strings.Builder
	var groups strings.Builder
	type wlRef struct {
		addr netip.Addr
		name string
	}
	byTier := map[string][]wlRef{}
	for a := range apps {
		app := fmt.Sprintf("app%02d", a)
		for ti, tier := range tiers {
			fmt.Fprintf(&groups, "---\napiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: %s-%s}\nspec: {match: app == %q && tier == %q}\n",
				app, tier.name, app, tier.name)
			for r := range replicas {
				addr := netip.AddrFrom4([4]byte{10, byte(a), byte(ti), byte(r + 1)})
				name := fmt.Sprintf("%s-%s-%d", app, tier.name, r)
				wl := &policy.Workload{Spec: policy.WorkloadSpec{IPs: []string{addr.String()},
					Tags: map[string]string{"app": app, "tier": tier.name, "env": "prod"}}}
				wl.APIVersion, wl.Kind, wl.Metadata.Name = policy.APIVersion, policy.KindWorkload, name
				w.wls = append(w.wls, wl)
				byTier[app+"/"+tier.name] = append(byTier[app+"/"+tier.name], wlRef{addr, name})
			}
		}
		fmt.Fprintf(&rules, "---\napiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: %s}\nspec:\n  category: Application\n  rules:\n", app)
		for ti := 1; ti < len(tiers); ti++ {
			fmt.Fprintf(&rules, "  - {name: to-%s, sources: [%s-%s], destinations: [%s-%s], services: [tcp/%d], action: allow}\n",
				tiers[ti].name, app, tiers[ti-1].name, app, tiers[ti].name, tiers[ti].port)
		}
	}
	current := groups.String() + rules.String()
	w.ev = compile(tb, w.wls, current)
	w.cand = compile(tb, w.wls, current+`---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: no-cache}
spec:
  category: Emergency
  rules:
  - {name: cache, services: [tcp/6379], action: drop}
`)

	rng := rand.New(rand.NewPCG(1, 2))
	distinct := map[flowKey]bool{}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range ringSize {
		a := rng.IntN(apps)
		app := fmt.Sprintf("app%02d", a)
		var r flow.Record
		switch rng.IntN(20) {
		case 0: // from the internet
			web := byTier[app+"/web"][rng.IntN(replicas)]
			r = flow.Record{Src: netip.AddrFrom4([4]byte{198, 51, byte(rng.IntN(4)), byte(rng.IntN(250))}), Dst: web.addr, DstWorkload: web.name, DstPort: 443}
		case 1: // a scan, dropped
			dst := w.wls[rng.IntN(len(w.wls))]
			r = flow.Record{Kind: flow.KindDrop, Src: netip.MustParseAddr("10.250.0.9"), Dst: netip.MustParseAddr(dst.Spec.IPs[0]),
				DstPort: uint16(1 + rng.IntN(1024)), SrcPackets: 3, Verdict: flow.Drop}
		default:
			ti := 1 + rng.IntN(len(tiers)-1)
			src := byTier[app+"/"+tiers[ti-1].name][rng.IntN(replicas)]
			dst := byTier[app+"/"+tiers[ti].name][rng.IntN(replicas)]
			r = flow.Record{Src: src.addr, SrcWorkload: src.name, Dst: dst.addr, DstPort: tiers[ti].port}
		}
		if r.Kind == 0 {
			r.Kind, r.Verdict = flow.KindEnd, flow.Allow
			r.SrcPort = uint16(32768 + rng.IntN(28000))
			r.SrcBytes, r.DstBytes, r.SrcPackets, r.DstPackets = 800, 20000, 10, 20
		}
		r.ID = fmt.Sprintf("h/%d", i)
		r.Proto = 6
		r.Start = start.Add(time.Duration(i) * time.Second)
		r.Seen = r.Start.Add(2 * time.Second)
		w.ring = append(w.ring, r)
		distinct[keyOf(&r)] = true
	}
	w.flows = len(distinct)
	return w
}

const benchRecords = 1_000_000

// BenchmarkCompliance classifies a million records (each op) against a
// policy and rolls them up to the app level, against the baseline of only
// iterating the records. Compare their ns/record.
func BenchmarkCompliance(b *testing.B) {
	w := newBenchWorld(b, 20, 5, 1<<16)
	b.Logf("%d workloads, %d records in the ring, %d distinct flows", len(w.wls), len(w.ring), w.flows)
	run := func(b *testing.B, fn func(r *flow.Record)) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range benchRecords {
				fn(&w.ring[i&(len(w.ring)-1)])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRecords), "ns/record")
	}
	b.Run("iterate", func(b *testing.B) {
		var sum uint64
		run(b, func(r *flow.Record) { sum += r.SrcBytes + uint64(r.DstPort) })
		if sum == 0 {
			b.Fatal("nothing iterated")
		}
	})
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"map", Options{NoDiscovery: true}},
		{"compliance", Options{Eval: w.ev, NoDiscovery: true}},
		{"whatif", Options{Eval: w.ev, Candidate: w.cand, NoDiscovery: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var a *Analyzer
			b.ReportAllocs()
			for b.Loop() {
				a, _ = New(w.wls, bc.opts)
				for i := range benchRecords {
					a.Add(&w.ring[i&(len(w.ring)-1)])
				}
				a.Map(LevelApp, nil)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRecords), "ns/record")
			if a.Total().Records() != benchRecords {
				b.Fatalf("%d records counted", a.Total().Records())
			}
		})
	}
}
