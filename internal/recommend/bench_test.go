package recommend

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// syntheticDC is apps applications of five tiers of perTier workloads each,
// plus n flow records: each tier calls the next one of its app on a tier
// port, every fifth flow goes to a shared DNS app, every fiftieth comes from
// outside, and a few go to another app's API.
func syntheticDC(apps, perTier, n int) ([]*policy.Workload, []flow.Record) {
	tiers := []string{"lb", "web", "api", "cache", "db"}
	tierPort := []uint16{443, 8080, 9000, 6379, 5432}
	var inv []*policy.Workload
	addr := func(a, t, w int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(a >> 8), byte(a), byte(t*perTier + w)})
	}
	for a := range apps {
		for t, tier := range tiers {
			for w := range perTier {
				inv = append(inv, workload(fmt.Sprintf("app%d-%s-%d", a, tier, w), addr(a, t, w).String(),
					"app", fmt.Sprintf("app%d", a), "tier", tier, "env", "prod"))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]flow.Record, n)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		a := rng.IntN(apps)
		t := rng.IntN(len(tiers) - 1)
		src := addr(a, t, rng.IntN(perTier))
		dst := addr(a, t+1, rng.IntN(perTier))
		port := tierPort[t+1]
		switch {
		case i%5 == 0: // DNS: app 0's db tier stands in for a shared resolver
			dst, port = addr(0, 4, 0), 53
		case i%50 == 1:
			src = netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))})
			dst, port = addr(a, 0, rng.IntN(perTier)), 443
		case i%100 == 3:
			dst, port = addr(rng.IntN(apps), 2, 0), 9000
		}
		proto := uint8(6)
		if port == 53 {
			proto = 17
		}
		recs[i] = flow.Record{
			ID: fmt.Sprintf("h%d/%d", i%64, i), Kind: flow.KindEnd, Src: src, Dst: dst, Proto: proto,
			SrcPort: uint16(32768 + rng.IntN(28000)), DstPort: port, SrcBytes: 500, DstBytes: 5000,
			Start: t0.Add(time.Duration(i) * time.Millisecond), Verdict: flow.Allow,
		}
		recs[i].End = recs[i].Start.Add(time.Second)
		recs[i].Seen = recs[i].End
	}
	return inv, recs
}

// BenchmarkRecommend1M is the design's recommendation target at a tenth of
// its size: 1M records over 10k workloads, the whole data center in scope
// (the target for 10M is under 10 s).
func BenchmarkRecommend1M(b *testing.B) {
	inv, recs := syntheticDC(400, 5, 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		d, err := Recommend(Input{Inventory: inv, Flows: recs, Scope: "all()"}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(d.Policy.Spec.Rules)), "rules")
	}
	b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRecommendOneApp is the usual case: one application's scope
// over the same data center.
func BenchmarkRecommendOneApp(b *testing.B) {
	inv, recs := syntheticDC(400, 5, 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Recommend(Input{Inventory: inv, Flows: recs, Scope: `app == "app7"`}, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
