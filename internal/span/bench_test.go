package span

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// bigSet is a data center: 40 hosts of 25 workloads, 100 applications of
// three tiers, a group per application tier and per /24 of outside
// partners, and nrules rules in one section per application, applied to
// the application.
func bigSet(tb testing.TB, nrules int) *policy.Set {
	tb.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	s := policy.NewSet()
	tiers := []string{"web", "api", "db"}
	const apps, hosts, perHost = 100, 40, 25
	for h := range hosts {
		for j := range perHost {
			name := fmt.Sprintf("h%d-w%d", h, j)
			w := wl(name, fmt.Sprintf("h%d", h), fmt.Sprintf("10.%d.%d.%d", h/200, h%200, j+1), fmt.Sprintf("fd00:%x::%x", h, j+1))
			w.Spec.Tags = map[string]string{"app": fmt.Sprintf("a%d", rng.IntN(apps)), "tier": pick(rng, tiers)}
			s.Put(w)
		}
	}
	var groups []string
	for a := range apps {
		s.Put(group(fmt.Sprintf("a%d", a), policy.GroupSpec{Match: fmt.Sprintf(`app == "a%d"`, a)}))
		for _, t := range tiers {
			name := fmt.Sprintf("a%d-%s", a, t)
			s.Put(group(name, policy.GroupSpec{Match: fmt.Sprintf(`app == "a%d" && tier == %q`, a, t)}))
			groups = append(groups, name)
		}
	}
	for p := range 200 {
		name := fmt.Sprintf("partner%d", p)
		s.Put(group(name, policy.GroupSpec{IPs: []string{fmt.Sprintf("198.%d.%d.0/24", 18+p/250, p%250)}}))
		groups = append(groups, name)
	}
	per := nrules / apps
	for a := range apps {
		sec := section(fmt.Sprintf("app%d", a), policy.CategoryApplication, []string{fmt.Sprintf("a%d", a)})
		for r := range per {
			// One side is a tier of the application, the other anything.
			own, other := fmt.Sprintf("a%d-%s", a, pick(rng, tiers)), pick(rng, groups)
			srcs, dsts := []string{own}, []string{other}
			if rng.IntN(2) == 0 {
				srcs, dsts = dsts, srcs
			}
			sec.Spec.Rules = append(sec.Spec.Rules, policy.Rule{
				Name:         fmt.Sprintf("r%d", r),
				Sources:      srcs,
				Destinations: dsts,
				Services:     []string{fmt.Sprintf("tcp/%d", 1000+rng.IntN(5000))},
				Action:       pick(rng, []policy.Action{policy.ActionAllow, policy.ActionDrop}),
			})
		}
		s.Put(sec)
	}
	next := uint32(100)
	s.AssignRuleIDs(func() uint32 { next++; return next })
	return s
}

func benchmarkHost(b *testing.B, nrules int) {
	s := bigSet(b, nrules)
	e, err := eval.Compile(s)
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewCompiler(e, s)
	if err != nil {
		b.Fatal(err)
	}
	_, stats, err := c.Host("h0", 1) // first call fills the per-rule caches
	if err != nil {
		b.Fatal(err)
	}
	st, _, _ := c.Host("h0", 1)
	enc, _ := Encode(st)
	for b.Loop() {
		if _, _, err := c.Host("h0", 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(stats.Rules), "rules/host")
	b.ReportMetric(float64(stats.Entries), "entries/host")
	b.ReportMetric(float64(stats.Identities), "identities/host")
	b.ReportMetric(float64(len(enc)), "bytes/host")
}

func BenchmarkHost10k(b *testing.B)  { benchmarkHost(b, 10_000) }
func BenchmarkHost100k(b *testing.B) { benchmarkHost(b, 100_000) }

// BenchmarkCompilerAllHosts is a publish: index the revision once, then
// every host's state.
func BenchmarkCompilerAllHosts(b *testing.B) {
	s := bigSet(b, 100_000)
	e, err := eval.Compile(s)
	if err != nil {
		b.Fatal(err)
	}
	hosts := Hosts(s)
	for b.Loop() {
		c, err := NewCompiler(e, s)
		if err != nil {
			b.Fatal(err)
		}
		for _, h := range hosts {
			if _, _, err := c.Host(h, 1); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(hosts)), "hosts")
}
