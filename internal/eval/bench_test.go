package eval

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// linearEvaluate is the baseline the index is measured against: the same
// compiled rules and identities, but every rule is checked in order, as a
// linear firewall chain would.
func linearEvaluate(e *Evaluator, f Flow) Decision {
	w, ok := e.start(&f)
	if !ok {
		return Decision{Verdict: policy.ActionAllow, StagedVerdict: policy.ActionAllow}
	}
	for ri := range e.rules {
		if w.pending == 0 {
			break
		}
		if r := &e.rules[ri]; r.srcN != 0 && !member(e.srcOf(r), w.srcGs, w.srcCtx) {
			continue
		}
		w.visit(int32(ri), true)
	}
	var pts [2]Point
	var d Decision
	n := e.finish(&w, &pts, &d)
	d.Points = append([]Point(nil), pts[:n]...)
	return d
}

// bigPolicy is a data center of 2000 tagged workloads, 5000 groups (tag
// expressions, CIDRs, nesting, some users and names) and 100k rules in 2000
// sections across the four categories. Memberships are shaped like a real
// one: a workload is in a few dozen groups, not in hundreds.
type bigPolicy struct {
	set   *policy.Set
	flows []Flow
}

var (
	bigOnce sync.Once
	big     bigPolicy
)

func loadBig(tb testing.TB) bigPolicy {
	tb.Helper()
	bigOnce.Do(func() { big = makeBig(100_000) })
	return big
}

func makeBig(nrules int) bigPolicy {
	r := rand.New(rand.NewPCG(42, 42))
	s := policy.NewSet()
	s.Default.Spec.Action = policy.ActionDrop
	const nwl, napps = 2000, 100
	tiers := []string{"web", "api", "db", "cache"}
	envs := []string{"prod", "dev", "test"}
	var wlIPs []netip.Addr
	for i := range nwl {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i / 200), byte(i%200 + 1)})
		wlIPs = append(wlIPs, ip)
		name := fmt.Sprintf("wl%04d", i)
		w := wl(name, "", ip.String())
		w.Spec.Tags = map[string]string{
			"app":  fmt.Sprintf("app%02d", i/(nwl/napps)),
			"tier": tiers[i%4],
			"env":  envs[(i/(nwl/napps))%3],
			"zone": fmt.Sprintf("z%d", i%10),
		}
		s.Workloads[name] = w
	}
	var groups []string
	add := func(spec policy.GroupSpec) {
		name := fmt.Sprintf("g%04d", len(groups))
		groups = append(groups, name)
		s.Groups[name] = grp(name, spec)
	}
	for _, t := range tiers {
		add(policy.GroupSpec{Match: fmt.Sprintf(`tier == %q`, t)})
	}
	for _, e := range envs {
		add(policy.GroupSpec{Match: fmt.Sprintf(`env == %q`, e)})
	}
	for a := range napps {
		add(policy.GroupSpec{Match: fmt.Sprintf(`app == "app%02d"`, a)})
		for _, t := range tiers {
			add(policy.GroupSpec{Match: fmt.Sprintf(`app == "app%02d" && tier == %q`, a, t)})
		}
	}
	for len(groups) < 1500 {
		a, b := r.IntN(napps), r.IntN(napps)
		switch r.IntN(3) {
		case 0:
			add(policy.GroupSpec{Match: fmt.Sprintf(`app in ("app%02d", "app%02d") && tier != %q`, a, b, tiers[r.IntN(4)])})
		case 1:
			add(policy.GroupSpec{Match: fmt.Sprintf(`app == "app%02d" && zone in ("z%d", "z%d")`, a, r.IntN(10), r.IntN(10))})
		default:
			add(policy.GroupSpec{Match: fmt.Sprintf(`app in ("app%02d", "app%02d", "app%02d") && env != %q`, a, b, r.IntN(napps), envs[r.IntN(3)])})
		}
	}
	add(policy.GroupSpec{IPs: []string{"10.0.0.0/8"}})
	for range 20 {
		add(policy.GroupSpec{IPs: []string{fmt.Sprintf("10.1.%d.0/24", r.IntN(10))}})
	}
	for len(groups) < 2000 {
		add(policy.GroupSpec{IPs: []string{fmt.Sprintf("10.1.%d.%d/%d", r.IntN(10), 16*r.IntN(13), 28+2*r.IntN(2))}})
	}
	for len(groups) < 4500 {
		if r.IntN(4) == 0 {
			add(policy.GroupSpec{IPs: []string{fmt.Sprintf("fd00:%x::/48", r.IntN(4096))}})
			continue
		}
		add(policy.GroupSpec{IPs: []string{
			fmt.Sprintf("172.%d.%d.0/24", 16+r.IntN(16), r.IntN(256)),
			fmt.Sprintf("192.168.%d.%d/28", r.IntN(256), 16*r.IntN(16)),
		}})
	}
	for len(groups) < 4900 {
		// Nest narrow groups: app-tier groups and CIDRs.
		add(policy.GroupSpec{Groups: []string{groups[7+r.IntN(500)], groups[r.IntN(len(groups))]}})
	}
	for len(groups) < 5000 {
		if r.IntN(2) == 0 {
			add(policy.GroupSpec{Users: []string{fmt.Sprintf("user%d", r.IntN(50))}})
		} else {
			add(policy.GroupSpec{FQDNs: []string{fmt.Sprintf("*.svc%d.example.com", r.IntN(50))}})
		}
	}

	ports := []string{"tcp/22", "tcp/80", "tcp/443", "tcp/5432", "tcp/6379", "tcp/8000-8100", "udp/53", "icmp/8"}
	for p := range 40 {
		ports = append(ports, fmt.Sprintf("tcp/%d", 9000+p))
	}
	type ruleRef struct{ src, dst, svc string }
	var written []ruleRef
	const perSection = 50
	nsections := nrules / perSection
	for si := range nsections {
		name := fmt.Sprintf("sec%04d", si)
		sec := section(name, policy.Categories[si*4/nsections], r.IntN(100), nil)
		if r.IntN(10) < 3 {
			sec.Spec.AppliedTo = []string{groups[7+r.IntN(napps*5)]}
		}
		for ri := range perSection {
			rule := policy.Rule{Name: fmt.Sprintf("r%02d", ri), Action: policy.ActionAllow}
			if r.IntN(10) == 0 {
				rule.Action = policy.ActionDrop
			}
			if r.IntN(20) == 0 {
				rule.Mode = policy.ModeStaged
			}
			switch n := r.IntN(1000); {
			case n < 2: // any to any
			case n < 150:
				rule.Destinations = []string{groups[r.IntN(len(groups))]}
			case n < 300:
				rule.Sources = []string{groups[r.IntN(len(groups))]}
			default:
				for range 1 + r.IntN(2) {
					rule.Sources = append(rule.Sources, groups[r.IntN(len(groups))])
					rule.Destinations = append(rule.Destinations, groups[r.IntN(len(groups))])
				}
			}
			for range 1 + r.IntN(2) {
				rule.Services = append(rule.Services, ports[r.IntN(len(ports))])
			}
			sec.Spec.Rules = append(sec.Spec.Rules, rule)
			s.RuleIDs[policy.RuleKey(name, rule.Name)] = uint32(2 + si*perSection + ri)
			if len(rule.Sources) > 0 && len(rule.Destinations) > 0 {
				written = append(written, ruleRef{rule.Sources[0], rule.Destinations[0], rule.Services[0]})
			}
		}
		s.Policies[name] = sec
	}

	// Half the flows are traffic some rule was written for; the others are
	// random pairs, which mostly fall to the default rule.
	e, err := Compile(s)
	if err != nil {
		panic(err)
	}
	membersOf := map[string][]netip.Addr{}
	for _, ip := range wlIPs {
		info, _ := e.Identity(e.IdentityOf(ip))
		for _, g := range info.Groups {
			membersOf[g] = append(membersOf[g], ip)
		}
	}
	var flows []Flow
	for len(flows) < 10_000 {
		f := Flow{Src: wlIPs[r.IntN(nwl)], Dst: wlIPs[r.IntN(nwl)], ICMPType: -1, ICMPCode: -1}
		pp := ports[r.IntN(len(ports))]
		if r.IntN(2) == 0 {
			w := written[r.IntN(len(written))]
			src, dst := membersOf[w.src], membersOf[w.dst]
			if len(src) == 0 || len(dst) == 0 {
				continue
			}
			f.Src, f.Dst, pp = src[r.IntN(len(src))], dst[r.IntN(len(dst))], w.svc
		} else if r.IntN(5) == 0 {
			f.Dst = netip.AddrFrom4([4]byte{172, byte(16 + r.IntN(16)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
		switch pp {
		case "udp/53":
			f.Proto, f.Port = 17, 53
		case "icmp/8":
			f.Proto, f.ICMPType, f.ICMPCode = 1, 8, 0
		default:
			f.Proto = 6
			fmt.Sscanf(pp, "tcp/%d", &f.Port)
		}
		if r.IntN(4) == 0 {
			f.User = fmt.Sprintf("user%d", r.IntN(50))
		}
		flows = append(flows, f)
	}
	return bigPolicy{set: s, flows: flows}
}

func BenchmarkCompile100k(b *testing.B) {
	bp := loadBig(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(bp.set); err != nil {
			b.Fatal(err)
		}
	}
}

// benchFlows are the benchmark's flows: "mixed" as generated, and
// "unmatched", those only the default rule decides, which walk every
// candidate.
func benchFlows(b *testing.B, e *Evaluator, flows []Flow) map[string][]Flow {
	b.Helper()
	out := map[string][]Flow{"mixed": flows}
	for _, f := range flows {
		if e.Evaluate(f).RuleID == policy.DefaultRuleID {
			out["unmatched"] = append(out["unmatched"], f)
		}
	}
	return out
}

func BenchmarkEvaluate100k(b *testing.B) {
	bp := loadBig(b)
	e := mustCompile(b, bp.set)
	sets := benchFlows(b, e, bp.flows)
	for _, name := range []string{"mixed", "unmatched"} {
		flows := sets[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var d Decision
			n := 0
			for b.Loop() {
				e.EvaluateInto(flows[n%len(flows)], &d)
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkEvaluate100kLinear is the baseline: the same decisions by a
// linear scan of the rules.
func BenchmarkEvaluate100kLinear(b *testing.B) {
	bp := loadBig(b)
	e := mustCompile(b, bp.set)
	sets := benchFlows(b, e, bp.flows)
	for _, name := range []string{"mixed", "unmatched"} {
		flows := sets[name]
		b.Run(name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				linearEvaluate(e, flows[n%len(flows)])
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// TestBigPolicyAgrees checks the index against the linear scan on the
// benchmark's policy, so the ratio compares equal answers.
func TestBigPolicyAgrees(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100k-rule policy")
	}
	bp := loadBig(t)
	e := mustCompile(t, bp.set)
	verdicts := map[policy.Action]int{}
	for _, f := range bp.flows[:2000] {
		got, want := e.Evaluate(f), linearEvaluate(e, f)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("flow %+v:\n got %+v\nwant %+v", f, got, want)
		}
		verdicts[got.Verdict]++
	}
	t.Logf("verdicts over 2000 flows: %v", verdicts)
}
