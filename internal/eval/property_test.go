package eval

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// naiveEvaluate is the policy semantics of docs/ARCHITECTURE.md written as
// plainly as possible: every group is resolved from scratch for every check
// and every rule is scanned in order. The evaluator must agree with it.
func naiveEvaluate(s *policy.Set, f Flow) Decision {
	var pts []Point
	if w := naiveWorkloadOf(s, f.Src); w != "" {
		pts = append(pts, naivePoint(s, f, w, policy.DirectionOut))
	}
	if w := naiveWorkloadOf(s, f.Dst); w != "" {
		pts = append(pts, naivePoint(s, f, w, policy.DirectionIn))
	}
	d := Decision{Verdict: policy.ActionAllow, StagedVerdict: policy.ActionAllow, Points: pts}
	if len(pts) == 0 {
		return d
	}
	d.Enforced = true
	last := pts[len(pts)-1]
	d.RuleID, d.Rule = last.RuleID, last.Rule
	for _, p := range pts {
		if p.Action != policy.ActionAllow {
			d.Verdict, d.RuleID, d.Rule = p.Action, p.RuleID, p.Rule
			break
		}
	}
	d.StagedRuleID, d.StagedRule = last.StagedRuleID, last.StagedRule
	for _, p := range pts {
		if p.StagedAction != policy.ActionAllow {
			d.StagedVerdict, d.StagedRuleID, d.StagedRule = p.StagedAction, p.StagedRuleID, p.StagedRule
			break
		}
	}
	return d
}

func naiveWorkloadOf(s *policy.Set, ip netip.Addr) string {
	for name, w := range s.Workloads {
		for _, a := range w.Spec.IPs {
			if netip.MustParseAddr(a) == ip.Unmap() {
				return name
			}
		}
	}
	return ""
}

func naivePoint(s *policy.Set, f Flow, wl string, d policy.Direction) Point {
	p := Point{Workload: wl, Direction: d}
	decided, stagedDecided := false, false
	for _, sec := range s.OrderedPolicies() {
		if len(sec.Spec.AppliedTo) > 0 {
			in := false
			for _, g := range sec.Spec.AppliedTo {
				for _, a := range s.Workloads[wl].Spec.IPs {
					if naiveInGroup(s, g, netip.MustParseAddr(a), "", "", false) {
						in = true
					}
				}
			}
			if !in {
				continue
			}
		}
		for _, r := range sec.Spec.Rules {
			if r.Direction != "" && r.Direction != policy.DirectionInOut && r.Direction != d {
				continue
			}
			if !naiveRuleMatches(s, r, f) {
				continue
			}
			key := policy.RuleKey(sec.Metadata.Name, r.Name)
			if !stagedDecided {
				p.StagedAction, p.StagedRuleID, p.StagedRule = r.Action, s.RuleIDs[key], key
				stagedDecided = true
			}
			if r.Mode != policy.ModeStaged {
				p.Action, p.RuleID, p.Rule = r.Action, s.RuleIDs[key], key
				decided = true
				break
			}
		}
		if decided {
			break
		}
	}
	if !decided {
		p.Action, p.RuleID, p.Rule = s.Default.Spec.Action, policy.DefaultRuleID, "default"
	}
	if !stagedDecided {
		p.StagedAction, p.StagedRuleID, p.StagedRule = s.Default.Spec.Action, policy.DefaultRuleID, "default"
	}
	return p
}

func naiveRuleMatches(s *policy.Set, r policy.Rule, f Flow) bool {
	anyOf := func(list []string, ok func(string) bool) bool {
		if len(list) == 0 {
			return true
		}
		for _, x := range list {
			if ok(x) {
				return true
			}
		}
		return false
	}
	if !anyOf(r.Sources, func(g string) bool { return naiveInGroup(s, g, f.Src.Unmap(), f.User, "", true) }) {
		return false
	}
	if !anyOf(r.Destinations, func(g string) bool { return naiveInGroup(s, g, f.Dst.Unmap(), "", f.FQDN, false) }) {
		return false
	}
	if !anyOf(r.Services, func(sv string) bool {
		specs := []string{sv}
		if !strings.Contains(sv, "/") && !protoNames[strings.ToLower(sv)] {
			specs = s.Services[sv].Spec.Ports
		}
		for _, p := range specs {
			spec, err := ports.Parse(p)
			if err != nil {
				panic(err)
			}
			if spec.Matches(f.Proto, f.Port, f.ICMPType, f.ICMPCode) {
				return true
			}
		}
		return false
	}) {
		return false
	}
	if len(r.Profiles) == 0 {
		return true
	}
	return anyOf(r.Profiles, func(p string) bool { return naiveProfile(s.ContextProfiles[p], f) })
}

// naiveInGroup reports whether an endpoint is in a group (or an inline
// literal): by address, by the workload tags of that address, by the user
// on the source side, by the name on the destination side, or through a
// nested group.
func naiveInGroup(s *policy.Set, name string, ip netip.Addr, user, fqdn string, source bool) bool {
	if p, err := netip.ParsePrefix(name); err == nil {
		return p.Masked().Contains(ip)
	}
	if a, err := netip.ParseAddr(name); err == nil {
		return a == ip
	}
	g := s.Groups[name]
	for _, c := range g.Spec.IPs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Masked().Contains(ip) {
			return true
		}
		if a, err := netip.ParseAddr(c); err == nil && a == ip {
			return true
		}
	}
	if g.Spec.Match != "" {
		x, err := tagexpr.Parse(g.Spec.Match)
		if err != nil {
			panic(err)
		}
		for _, w := range s.Workloads {
			for _, a := range w.Spec.IPs {
				if netip.MustParseAddr(a) == ip && x.Eval(w.Spec.Tags) {
					return true
				}
			}
		}
	}
	if source && user != "" {
		for _, u := range g.Spec.Users {
			if strings.EqualFold(u, user) {
				return true
			}
		}
		for _, dg := range g.Spec.DirectoryGroups {
			for _, u := range naiveDirectory[dg] {
				if strings.EqualFold(u, user) {
					return true
				}
			}
		}
	}
	if !source && fqdn != "" {
		for _, n := range g.Spec.FQDNs {
			if naiveNameMatches(n, fqdn) {
				return true
			}
		}
	}
	for _, child := range g.Spec.Groups {
		if naiveInGroup(s, child, ip, user, fqdn, source) {
			return true
		}
	}
	return false
}

// naiveDirectory is the directory of the random policies: group -> its
// users, nesting resolved. "unsynced" is a group the directory lacks.
var naiveDirectory = mapDirectory{"hr": {"alice"}, "staff": {"alice", "bob"}, "it": {"carol"}}

type mapDirectory map[string][]string

func (m mapDirectory) Members(group string) []string { return m[group] }

func naiveNameMatches(pattern, name string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if pattern == "*" {
		return name != ""
	}
	if rest, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(name, rest) && len(name) > len(rest)
	}
	return name == pattern
}

func naiveProfile(p *policy.ContextProfile, f Flow) bool {
	if f.App == "" && f.FQDN == "" {
		return false
	}
	if len(p.Spec.Apps) > 0 {
		ok := false
		for _, a := range p.Spec.Apps {
			if naiveApp(a, f) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if len(p.Spec.FQDNs) == 0 {
		return true
	}
	for _, n := range p.Spec.FQDNs {
		if f.FQDN != "" && naiveNameMatches(n, f.FQDN) {
			return true
		}
	}
	return false
}

func naiveApp(a policy.AppMatch, f Flow) bool {
	if f.App == "" {
		return false
	}
	carriesTLS := f.App == "APP_TLS" || f.App == "APP_HTTPS" || f.TLSVersion != ""
	if f.App != a.Name && !(a.Name == "APP_TLS" && carriesTLS) {
		return false
	}
	version := func(s string) (int, int, bool) {
		ma, mi, ok := strings.Cut(s, ".")
		x, err1 := strconv.Atoi(ma)
		y, err2 := strconv.Atoi(mi)
		if !ok {
			y, err2 = 0, nil
		}
		return x, y, err1 == nil && err2 == nil
	}
	if a.MinVersion == "" && a.MaxVersion == "" {
		return true
	}
	x, y, ok := version(f.TLSVersion)
	if !ok {
		return false
	}
	if a.MinVersion != "" {
		mx, my, _ := version(a.MinVersion)
		if x < mx || (x == mx && y < my) {
			return false
		}
	}
	if a.MaxVersion != "" {
		mx, my, _ := version(a.MaxVersion)
		if x > mx || (x == mx && y > my) {
			return false
		}
	}
	return true
}

// gen makes random small policies and flows over a small address space, so
// that groups, literals and workloads overlap often.
type gen struct {
	r *rand.Rand
}

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func (g *gen) addr() string {
	switch g.r.IntN(5) {
	case 0:
		return fmt.Sprintf("fd00::%x", g.r.IntN(24))
	case 1:
		return fmt.Sprintf("10.0.%d.%d", 1+g.r.IntN(2), g.r.IntN(24))
	case 2:
		return fmt.Sprintf("192.0.2.%d", g.r.IntN(8))
	default:
		return fmt.Sprintf("10.0.0.%d", g.r.IntN(24))
	}
}

var (
	genPrefixes = []string{"10.0.0.0/8", "10.0.0.0/24", "10.0.0.8/29", "10.0.0.3", "10.0.1.0/24", "10.0.0.0/28",
		"fd00::/64", "fd00::/124", "fd00::5", "192.0.2.0/30", "0.0.0.0/0", "::/0"}
	genMatches = []string{`app == "a"`, `tier != "db"`, `env in ("prod", "dev")`, `app == "b" && tier in ("web", "api")`,
		`!(env == "prod")`, `has(app)`, `tier not in ("web")`, `app == "c" || env == "dev"`, `all()`}
	genNames = []string{"a.example.com", "*.example.com", "*.b.example.com", "x.org", "*"}
	genPorts = []string{"tcp/80", "tcp/22", "tcp/8000-8100", "udp/53", "icmp/8", "icmp/3/4", "icmp", "tcp", "any", "icmpv6/128", "udp"}
)

func (g *gen) set() *policy.Set {
	s := policy.NewSet()
	s.Default.Spec.Action = policy.Action(g.pick("allow", "drop", "reject"))
	used := map[string]bool{}
	for i := range 1 + g.r.IntN(8) {
		var ips []string
		for range 1 + g.r.IntN(2) {
			if a := g.addr(); !used[a] {
				used[a] = true
				ips = append(ips, a)
			}
		}
		tags := map[string]string{}
		for _, k := range []string{"app", "tier", "env"} {
			if g.chance(0.7) {
				tags[k] = map[string][]string{"app": {"a", "b", "c"}, "tier": {"web", "api", "db"}, "env": {"prod", "dev"}}[k][g.r.IntN(2+btoi(k != "env"))]
			}
		}
		if len(ips) == 0 {
			continue
		}
		w := wl(fmt.Sprintf("w%d", i), "", ips...)
		w.Spec.Tags = tags
		s.Workloads[w.Metadata.Name] = w
	}
	ngroups := 1 + g.r.IntN(8)
	var groupNames []string
	for i := range ngroups {
		var spec policy.GroupSpec
		for spec.Match == "" && spec.IPs == nil && spec.Groups == nil && spec.Users == nil && spec.DirectoryGroups == nil && spec.FQDNs == nil {
			if g.chance(0.5) {
				spec.Match = g.pick(genMatches...)
			}
			if g.chance(0.3) {
				spec.IPs = append(spec.IPs, g.pick(genPrefixes...))
			}
			if i > 0 && g.chance(0.3) {
				spec.Groups = append(spec.Groups, groupNames[g.r.IntN(i)])
				if i > 1 && g.chance(0.3) {
					spec.Groups = append(spec.Groups, groupNames[g.r.IntN(i)])
				}
			}
			if g.chance(0.15) {
				spec.Users = append(spec.Users, g.pick("alice", "bob", "carol"))
			}
			if g.chance(0.15) {
				spec.FQDNs = append(spec.FQDNs, g.pick(genNames...))
			}
			if g.chance(0.15) {
				spec.DirectoryGroups = append(spec.DirectoryGroups, g.pick("hr", "staff", "it", "unsynced"))
			}
		}
		name := fmt.Sprintf("g%d", i)
		groupNames = append(groupNames, name)
		s.Groups[name] = grp(name, spec)
	}
	for i := range g.r.IntN(3) {
		name := fmt.Sprintf("svc%d", i)
		s.Services[name] = svc(name, g.pick(genPorts...), g.pick(genPorts...))
	}
	for i := range g.r.IntN(3) {
		name := fmt.Sprintf("prof%d", i)
		var spec policy.ContextProfileSpec
		for range g.r.IntN(3) {
			a := policy.AppMatch{Name: g.pick("APP_TLS", "APP_HTTPS", "APP_SSH")}
			if g.chance(0.4) {
				a.MinVersion = g.pick("1.0", "1.2", "1.3")
			}
			if g.chance(0.2) {
				a.MaxVersion = g.pick("1.1", "1.2")
			}
			spec.Apps = append(spec.Apps, a)
		}
		if g.chance(0.4) {
			spec.FQDNs = append(spec.FQDNs, g.pick(genNames...))
		}
		s.ContextProfiles[name] = prof(name, spec)
	}
	endpoint := func() string {
		if g.chance(0.25) {
			return g.pick(genPrefixes...)
		}
		return groupNames[g.r.IntN(len(groupNames))]
	}
	id := uint32(10)
	for i := range 1 + g.r.IntN(4) {
		name := fmt.Sprintf("sec%d", i)
		sec := section(name, policy.Categories[g.r.IntN(4)], g.r.IntN(3), nil)
		if g.chance(0.3) {
			sec.Spec.AppliedTo = []string{endpoint()}
		}
		for j := range 1 + g.r.IntN(6) {
			r := policy.Rule{
				Name:      fmt.Sprintf("r%d", j),
				Action:    policy.Action(g.pick("allow", "allow", "drop", "reject")),
				Direction: policy.Direction(g.pick("", "in", "out", "inout")),
			}
			if g.chance(0.25) {
				r.Mode = policy.ModeStaged
			}
			for range g.r.IntN(3) {
				r.Sources = append(r.Sources, endpoint())
			}
			for range g.r.IntN(3) {
				r.Destinations = append(r.Destinations, endpoint())
			}
			for range g.r.IntN(3) {
				if len(s.Services) > 0 && g.chance(0.3) {
					r.Services = append(r.Services, fmt.Sprintf("svc%d", g.r.IntN(len(s.Services))))
				} else {
					r.Services = append(r.Services, g.pick(genPorts...))
				}
			}
			if len(s.ContextProfiles) > 0 && g.chance(0.2) {
				r.Profiles = []string{fmt.Sprintf("prof%d", g.r.IntN(len(s.ContextProfiles)))}
			}
			sec.Spec.Rules = append(sec.Spec.Rules, r)
			s.RuleIDs[policy.RuleKey(name, r.Name)] = id
			id += 1 + uint32(g.r.IntN(3))
		}
		s.Policies[name] = sec
	}
	return s
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (g *gen) flow(s *policy.Set) Flow {
	endpoint := func() netip.Addr {
		if names := sortedKeys(s.Workloads); len(names) > 0 && g.chance(0.6) {
			w := s.Workloads[names[g.r.IntN(len(names))]]
			return netip.MustParseAddr(w.Spec.IPs[g.r.IntN(len(w.Spec.IPs))])
		}
		return netip.MustParseAddr(g.addr())
	}
	f := Flow{Src: endpoint(), Dst: endpoint(), ICMPType: -1, ICMPCode: -1}
	switch g.r.IntN(4) {
	case 0:
		f.Proto = 1
		f.ICMPType, f.ICMPCode = int16(g.pick2(3, 8)), int16(g.r.IntN(5))
	case 1:
		f.Proto = 17
		f.Port = uint16(g.pick2(53, 8050))
	default:
		f.Proto = 6
		f.Port = uint16([]int{22, 80, 443, 7999, 8000, 8100, 8101}[g.r.IntN(7)])
	}
	if g.chance(0.05) {
		f.Proto, f.Port, f.ICMPType, f.ICMPCode = 58, 0, 128, 0
	}
	if g.chance(0.4) {
		f.App = g.pick("APP_TLS", "APP_HTTPS", "APP_SSH", "APP_DNS")
		f.TLSVersion = g.pick("", "1.0", "1.1", "1.2", "1.3")
	}
	if g.chance(0.4) {
		f.User = g.pick("alice", "bob", "carol", "dave", "Alice", "BOB")
	}
	if g.chance(0.4) {
		f.FQDN = g.pick("a.example.com", "b.example.com", "x.b.example.com", "example.com", "x.org", "A.Example.COM.", "b.example.com.evil")
	}
	return f
}

func (g *gen) pick2(a, b int) int {
	if g.chance(0.5) {
		return a
	}
	return b
}

// TestAgainstReference checks the indexed evaluator (and the linear
// baseline) against the plain reference on random policies and flows, once
// per way of merging candidate lists.
func TestAgainstReference(t *testing.T) {
	policies, flows := 1500, 40
	if testing.Short() {
		policies = 200
	}
	defer func(v int) { heapMaxGroups = v }(heapMaxGroups)
	for _, merge := range []struct {
		name      string
		maxGroups int
	}{{"heap", 1 << 30}, {"bitmap", 0}, {"default", heapMaxGroups}} {
		t.Run(merge.name, func(t *testing.T) {
			heapMaxGroups = merge.maxGroups
			g := &gen{r: rand.New(rand.NewPCG(1, 2))}
			checked, decided := 0, map[string]int{}
			var into Decision
			for i := range policies {
				s := g.set()
				e, err := Compile(s, WithDirectory(naiveDirectory))
				if err != nil {
					t.Fatalf("policy %d: Compile: %v", i, err)
				}
				for range flows {
					f := g.flow(s)
					want := naiveEvaluate(s, f)
					got := e.Evaluate(f)
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("policy %d, flow %+v:\n got %+v\nwant %+v\npolicy:\n%s", i, f, got, want, dumpSet(s))
					}
					if lin := linearEvaluate(e, f); !reflect.DeepEqual(lin, want) {
						t.Fatalf("policy %d, flow %+v: linear scan\n got %+v\nwant %+v", i, f, lin, want)
					}
					e.EvaluateInto(f, &into)
					if !reflect.DeepEqual(into.Points, want.Points) && len(into.Points)+len(want.Points) > 0 {
						t.Fatalf("EvaluateInto points %+v, want %+v", into.Points, want.Points)
					}
					checked++
					switch {
					case !got.Enforced:
						decided["no point"]++
					case got.RuleID == policy.DefaultRuleID:
						decided["default"]++
					default:
						decided["rule "+string(got.Verdict)]++
					}
					if got.StagedRule != got.Rule {
						decided["staged differs"]++
					}
				}
			}
			t.Logf("%d flows over %d random policies agree with the reference; %v", checked, policies, decided)
		})
	}
}

func dumpSet(s *policy.Set) string {
	var b strings.Builder
	for n, w := range s.Workloads {
		fmt.Fprintf(&b, "workload %s %v %v\n", n, w.Spec.IPs, w.Spec.Tags)
	}
	for n, g := range s.Groups {
		fmt.Fprintf(&b, "group %s %+v\n", n, g.Spec)
	}
	for n, sv := range s.Services {
		fmt.Fprintf(&b, "service %s %v\n", n, sv.Spec.Ports)
	}
	for n, p := range s.ContextProfiles {
		fmt.Fprintf(&b, "profile %s %+v\n", n, p.Spec)
	}
	for _, p := range s.OrderedPolicies() {
		fmt.Fprintf(&b, "section %s %s/%d appliedTo=%v\n", p.Metadata.Name, p.Spec.Category, p.Spec.Priority, p.Spec.AppliedTo)
		for _, r := range p.Spec.Rules {
			fmt.Fprintf(&b, "  %+v\n", r)
		}
	}
	fmt.Fprintf(&b, "default %s\n", s.Default.Spec.Action)
	return b.String()
}
