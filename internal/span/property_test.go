package span

import (
	"errors"
	"flag"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
)

var (
	propertySets = flag.Int("span.sets", 3000, "random policies of TestKernelModelMatchesEvaluator")
	propertySeed = flag.Uint64("span.seed", 0, "seed of the random policies (0: from the clock)")
	propertyOnly = flag.Int("span.only", -1, "run only this random policy (its index)")
)

func wl(name, host string, ips ...string) *policy.Workload {
	return &policy.Workload{
		Header: header(policy.KindWorkload, name),
		Spec:   policy.WorkloadSpec{IPs: ips, Host: host, Interface: "bhw" + name},
	}
}

// modelUniverse has three hosts, dual-stack, IPv4-only and IPv6-only
// workloads, and one workload with two IPv4 addresses (which some policies
// cannot express in the kernel).
var modelUniverse = universe{
	workloads: []*policy.Workload{
		wl("a1", "h1", "10.1.0.1", "fd00:1::1"),
		wl("a2", "h1", "10.1.0.2"),
		wl("a3", "h1", "10.1.0.3", "fd00:1::3"),
		wl("b1", "h2", "10.2.0.1", "fd00:2::1"),
		wl("b2", "h2", "10.2.0.2", "10.2.7.2", "fd00:2::2"),
		wl("c1", "h3", "fd00:3::1"),
		wl("c2", "h3", "10.3.0.2", "fd00:3::2"),
	},
	prefixes: []string{
		"10.0.0.0/8", "10.1.0.0/16", "10.1.0.0/30", "10.2.0.0/24", "10.1.0.2/32", "10.3.0.0/16",
		"192.168.0.0/16", "0.0.0.0/0", "fd00::/16", "fd00:1::/64", "fd00:2::2/128", "fd00:3::/120",
		"::/0", "2001:db8::/32",
	},
	specs: []string{
		"tcp/80", "tcp/443", "tcp/8000-8100", "tcp", "tcp/0-65535", "udp/53", "udp/1000-2000", "udp",
		"any", "icmp", "icmp/8", "icmp/8/0", "icmp/3/4", "icmpv6/128", "icmpv6", "sctp/9000", "proto/47",
	},
	l7: true,
}

// singleV4Universe is modelUniverse without b2's second IPv4 address,
// which makes many policies inexact.
var singleV4Universe = func() universe {
	u := modelUniverse
	u.workloads = slices.Clone(u.workloads)
	for i, w := range u.workloads {
		if w.Metadata.Name == "b2" {
			w = w.DeepCopy()
			w.Spec.IPs = slices.DeleteFunc(w.Spec.IPs, func(ip string) bool { return ip == "10.2.7.2" })
			u.workloads[i] = w
		}
	}
	return u
}()

// Addresses of no workload that probes also use.
var outsiders = []string{
	"10.1.0.200", "10.2.0.99", "10.7.7.7", "192.168.3.4", "8.8.8.8",
	"fd00:1::99", "fd00:9::1", "2001:db8::5", "2606:4700::1",
}

// randomFlow draws a flow between two addresses of one family, at least
// one of them usually a workload's, some with L7 context.
func randomFlow(rng *rand.Rand, wls, outs []netip.Addr) eval.Flow {
	var a, b netip.Addr
	for {
		all := append(append([]netip.Addr{}, wls...), outs...)
		if rng.IntN(5) > 0 {
			a, b = pick(rng, wls), pick(rng, all)
		} else {
			a, b = pick(rng, all), pick(rng, all)
		}
		if rng.IntN(2) == 0 {
			a, b = b, a
		}
		if a != b && a.Is4() == b.Is4() {
			break
		}
	}
	f := eval.Flow{Src: a, Dst: b, ICMPType: -1, ICMPCode: -1}
	// Some flows carry the L7 context the queue reader would learn.
	switch rng.IntN(6) {
	case 0:
		f.App, f.TLSVersion = "APP_TLS", pick(rng, []string{"1.0", "1.1", "1.2", "1.3"})
	case 1:
		f.App, f.TLSVersion = "APP_HTTPS", pick(rng, []string{"", "1.2"})
	case 2:
		f.App = pick(rng, []string{"APP_SSH", "APP_HTTP"})
	}
	switch rng.IntN(7) {
	case 0, 1:
		f.Proto, f.Port = nft.ProtoTCP, pick(rng, []uint16{0, 22, 80, 443, 7999, 8000, 8050, 8100, 8101, 65535})
	case 2:
		f.Proto, f.Port = nft.ProtoUDP, pick(rng, []uint16{53, 54, 999, 1000, 1500, 2000, 2001})
	case 3:
		f.Proto, f.Port = nft.ProtoSCTP, pick(rng, []uint16{9000, 9001})
	case 4:
		f.Proto = pick(rng, []uint8{47, 50})
	default:
		if a.Is4() {
			f.Proto = nft.ProtoICMP
			tc := pick(rng, [][2]int16{{8, 0}, {8, 1}, {3, 4}, {3, 3}, {0, 0}, {13, 0}})
			f.ICMPType, f.ICMPCode = tc[0], tc[1]
		} else {
			f.Proto = nft.ProtoICMPv6
			tc := pick(rng, [][2]int16{{128, 0}, {129, 0}, {1, 4}})
			f.ICMPType, f.ICMPCode = tc[0], tc[1]
		}
	}
	// Names only for destinations outside the workloads: a local
	// destination's ingress point cannot check names (see the package doc).
	if rng.IntN(3) == 0 && slices.Contains(outs, b) {
		f.FQDN = pick(rng, []string{"pay.example.com", "a.example.org", "example.org", "other.net"})
	}
	return f
}

// TestKernelModelMatchesEvaluator is the spec check of the span compiler:
// for thousands of random policies, every host's state, read the way the
// kernel reads it (lookup), decides random flows as the evaluator does —
// verdict, rule id and log flag, at each point and for the flow.
func TestKernelModelMatchesEvaluator(t *testing.T) {
	seed := *propertySeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -span.seed=%d)", seed, seed)
	sets := *propertySets
	if testing.Short() {
		sets /= 10
	}
	const probes = 300

	var wls, outs []netip.Addr
	for _, w := range modelUniverse.workloads {
		for _, ip := range w.Spec.IPs {
			wls = append(wls, netip.MustParseAddr(ip))
		}
	}
	for _, s := range outsiders {
		outs = append(outs, netip.MustParseAddr(s))
	}

	start := time.Now()
	var (
		checked, inexact, flows, failures int
		named                             int // flows with a destination name
		verdicts                          = map[policy.Action]int{}
		byRule                            = map[bool]int{} // decided by a rule (true) or the default
		size                              Stats
		maxEntries                        int
	)
	for i := 0; i < sets && failures < 5; i++ {
		if *propertyOnly >= 0 && i != *propertyOnly {
			continue
		}
		// One stream per policy: a failure reruns alone with -span.only.
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		u := modelUniverse
		if rng.IntN(8) > 0 {
			u = singleV4Universe
		}
		s := randomSet(t, rng, u)
		e, err := eval.Compile(s)
		if err != nil {
			t.Fatalf("set %d: compile: %v", i, err)
		}
		dp, stats, err := newDataPlane(t, e, s)
		var ie *InexactError
		if errors.As(err, &ie) {
			inexact++
			continue
		}
		if err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		checked++
		// A rule whose name condition the kernel cannot check (with a
		// profile) is left out: flows with names are then not exact.
		names := true
		for _, st := range stats {
			names = names && st.FQDNSkipped == 0
		}
		for _, st := range stats {
			size.Entries += st.Entries
			size.Ranges += st.Ranges
			size.Rules += st.Rules
			size.Staged += st.Staged
			size.L7 += st.L7
			size.OneFamily += st.OneFamily
			maxEntries = max(maxEntries, st.Entries)
		}
		for range probes {
			f := randomFlow(rng, wls, outs)
			if !names {
				f.FQDN = ""
			}
			if f.FQDN != "" {
				named++
			}
			d, diff := compare(t, e, dp, f)
			flows++
			verdicts[d.Verdict]++
			byRule[d.RuleID > policy.DefaultRuleID]++
			if diff != "" {
				failures++
				t.Errorf("set %d (-span.seed=%d -span.only=%d), flow %v -> %v proto %d port %d icmp %d/%d: %s\npolicy:\n%s\nstates:\n%s",
					i, seed, i, f.Src, f.Dst, f.Proto, f.Port, f.ICMPType, f.ICMPCode, diff, dumpSet(s), dumpStates(dp))
				break
			}
		}
	}
	t.Logf("%d random policies (%d exact, %d refused as inexact), %d flows in %v: verdicts %v; decided by a rule %d, by the default or not enforced %d",
		checked+inexact, checked, inexact, flows, time.Since(start).Round(time.Millisecond), verdicts, byRule[true], byRule[false])
	t.Logf("%d flows with a destination name", named)
	t.Logf("per host on average: %.1f rules, %.1f entries (max %d), %.1f identity ranges; left out: %.2f staged, %.2f L7 rules; %d rules held one family of a workload",
		float64(size.Rules)/float64(3*checked), float64(size.Entries)/float64(3*checked), maxEntries,
		float64(size.Ranges)/float64(3*checked), float64(size.Staged)/float64(3*checked), float64(size.L7)/float64(3*checked), size.OneFamily)
	if inexact > sets/5 {
		t.Errorf("%d of %d policies inexact: the generator should rarely make them", inexact, sets)
	}
}
