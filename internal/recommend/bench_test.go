package recommend

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// syntheticDC is apps applications of five tiers of perTier workloads
// each, and a generator of flow records over them: each tier calls the
// next one of its app on a tier port, every fifth flow goes to a shared DNS
// app, every fiftieth comes from outside, and a few go to another app's
// API. The generator fills one reused record per call, as the flow store's
// Scan does, so that 10M records never sit in memory.
func syntheticDC(apps, perTier int) ([]*policy.Workload, *generator) {
	g := &generator{apps: apps, perTier: perTier}
	var inv []*policy.Workload
	for a := range apps {
		for t, tier := range synthTiers {
			for w := range perTier {
				inv = append(inv, workload(fmt.Sprintf("app%d-%s-%d", a, tier, w), g.addr(a, t, w).String(),
					"app", fmt.Sprintf("app%d", a), "tier", tier, "env", "prod"))
			}
		}
	}
	return inv, g
}

var (
	synthTiers    = []string{"lb", "web", "api", "cache", "db"}
	synthTierPort = []uint16{443, 8080, 9000, 6379, 5432}
)

type generator struct {
	apps, perTier int
	rng           *rand.Rand
	id            []byte
	t0            time.Time
}

func (g *generator) addr(a, t, w int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(a >> 8), byte(a), byte(t*g.perTier + w)})
}

// each calls fn with n records, the same n for every call.
func (g *generator) each(n int, fn func(*flow.Record)) {
	g.rng = rand.New(rand.NewPCG(1, 2))
	g.t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var rec flow.Record
	for i := range n {
		g.fill(i, &rec)
		fn(&rec)
	}
}

func (g *generator) fill(i int, rec *flow.Record) {
	rng := g.rng
	a := rng.IntN(g.apps)
	t := rng.IntN(len(synthTiers) - 1)
	src := g.addr(a, t, rng.IntN(g.perTier))
	dst := g.addr(a, t+1, rng.IntN(g.perTier))
	port := synthTierPort[t+1]
	switch {
	case i%5 == 0: // DNS: app 0's db tier stands in for a shared resolver
		dst, port = g.addr(0, 4, 0), 53
	case i%50 == 1:
		src = netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))})
		dst, port = g.addr(a, 0, rng.IntN(g.perTier)), 443
	case i%100 == 3:
		dst, port = g.addr(rng.IntN(g.apps), 2, 0), 9000
	}
	proto := uint8(6)
	if port == 53 {
		proto = 17
	}
	g.id = append(strconv.AppendInt(append(g.id[:0], 'h'), int64(i%64), 10), '/')
	g.id = strconv.AppendInt(g.id, int64(i), 10)
	start := g.t0.Add(time.Duration(i) * time.Millisecond)
	*rec = flow.Record{
		ID: string(g.id), Kind: flow.KindEnd, Src: src, Dst: dst, Proto: proto,
		SrcPort: uint16(32768 + rng.IntN(28000)), DstPort: port, SrcBytes: 500, DstBytes: 5000,
		Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second), Verdict: flow.Allow,
	}
}

// benchRecommend measures a recommendation over n generated records and,
// in the same run, a baseline: a plain pass over the same records that
// only sums their bytes. ratio is how many baselines a recommendation
// costs; what is left after the baseline is the recommender's own work.
func benchRecommend(b *testing.B, n int, scope string, opt Options) {
	inv, gen := syntheticDC(400, 5) // 10k workloads
	var base, rec time.Duration
	var rules int
	for b.Loop() {
		t := time.Now()
		var sum uint64
		gen.each(n, func(r *flow.Record) { sum += r.SrcBytes + r.DstBytes })
		base += time.Since(t)
		if sum == 0 {
			b.Fatal("no bytes")
		}

		t = time.Now()
		a, err := NewAggregator(inv, scope, opt)
		if err != nil {
			b.Fatal(err)
		}
		gen.each(n, a.Add)
		d, err := a.Draft(nil)
		if err != nil {
			b.Fatal(err)
		}
		rec += time.Since(t)
		if got := a.Stats().Records; got != uint64(n) {
			b.Fatalf("aggregated %d records, want %d", got, n)
		}
		rules = len(d.Policy.Spec.Rules)
	}
	runs := float64(b.N)
	b.ReportMetric(base.Seconds()/runs, "baseline-s")
	b.ReportMetric(rec.Seconds()/runs, "recommend-s")
	b.ReportMetric(rec.Seconds()/base.Seconds(), "ratio")
	b.ReportMetric(float64(n)*runs/rec.Seconds(), "records/s")
	b.ReportMetric(float64(rules), "rules")
}

// The design's targets: 1M and 10M records over 10k workloads, the whole
// data center in scope; 10M in well under 10 s on 2 cores. With IDs the
// aggregator merges each connection's records itself; the manager feeds
// the flow store's rows, already one per connection.
func BenchmarkRecommend1M(b *testing.B) { benchRecommend(b, 1_000_000, "all()", Options{}) }
func BenchmarkRecommend10M(b *testing.B) {
	benchRecommend(b, 10_000_000, "all()", Options{})
}
func BenchmarkRecommend10MMerged(b *testing.B) {
	benchRecommend(b, 10_000_000, "all()", Options{OneRecordPerConnection: true})
}

// BenchmarkRecommendOneApp is the usual case: one application's scope
// over the same data center.
func BenchmarkRecommendOneApp(b *testing.B) {
	benchRecommend(b, 1_000_000, `app == "app7"`, Options{})
}
