package eval

import (
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// Builders keep the scenarios below readable.

func hdr(k policy.Kind, name string) policy.Header {
	return policy.Header{APIVersion: policy.APIVersion, Kind: k, Metadata: policy.Metadata{Name: name}}
}

// tags reads "k=v,k=v".
func tags(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func wl(name, tagList string, ips ...string) *policy.Workload {
	return &policy.Workload{Header: hdr(policy.KindWorkload, name), Spec: policy.WorkloadSpec{IPs: ips, Tags: tags(tagList)}}
}

func grp(name string, spec policy.GroupSpec) *policy.Group {
	return &policy.Group{Header: hdr(policy.KindGroup, name), Spec: spec}
}

func svc(name string, ports ...string) *policy.Service {
	return &policy.Service{Header: hdr(policy.KindService, name), Spec: policy.ServiceSpec{Ports: ports}}
}

func prof(name string, spec policy.ContextProfileSpec) *policy.ContextProfile {
	return &policy.ContextProfile{Header: hdr(policy.KindContextProfile, name), Spec: spec}
}

func section(name string, cat policy.Category, prio int, appliedTo []string, rules ...policy.Rule) *policy.Policy {
	return &policy.Policy{Header: hdr(policy.KindPolicy, name), Spec: policy.PolicySpec{
		Category: cat, Priority: prio, AppliedTo: appliedTo, Rules: rules,
	}}
}

// rl builds a rule; src, dst and services are comma-separated lists.
func rl(name, src, dst, services string, a policy.Action) policy.Rule {
	list := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	return policy.Rule{Name: name, Sources: list(src), Destinations: list(dst), Services: list(services), Action: a}
}

func staged(r policy.Rule) policy.Rule { r.Mode = policy.ModeStaged; return r }

func dir(d policy.Direction, r policy.Rule) policy.Rule { r.Direction = d; return r }

func withProfiles(r policy.Rule, p ...string) policy.Rule { r.Profiles = p; return r }

// newSet builds a set with the given default action and objects, and gives
// rules ids in evaluation order from 100, as the manager would.
func newSet(dflt policy.Action, objs ...policy.Object) *policy.Set {
	s := policy.NewSet()
	s.Default.Spec.Action = dflt
	for _, o := range objs {
		switch o := o.(type) {
		case *policy.Workload:
			s.Workloads[o.Metadata.Name] = o
		case *policy.Group:
			s.Groups[o.Metadata.Name] = o
		case *policy.Service:
			s.Services[o.Metadata.Name] = o
		case *policy.ContextProfile:
			s.ContextProfiles[o.Metadata.Name] = o
		case *policy.Policy:
			s.Policies[o.Metadata.Name] = o
		}
	}
	id := uint32(100)
	for _, p := range s.OrderedPolicies() {
		for _, r := range p.Spec.Rules {
			s.RuleIDs[policy.RuleKey(p.Metadata.Name, r.Name)] = id
			id++
		}
	}
	return s
}

func mustCompile(t testing.TB, s *policy.Set) *Evaluator {
	t.Helper()
	e, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

// fl reads a flow as "src dst proto/port" or "src dst icmp/type/code"; the
// options set L7 context.
func fl(src, dst, what string, opts ...func(*Flow)) Flow {
	f := Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), ICMPType: -1, ICMPCode: -1}
	parts := strings.Split(what, "/")
	num := func(i int) int {
		n := 0
		for _, c := range parts[i] {
			n = n*10 + int(c-'0')
		}
		return n
	}
	switch parts[0] {
	case "tcp":
		f.Proto, f.Port = 6, uint16(num(1))
	case "udp":
		f.Proto, f.Port = 17, uint16(num(1))
	case "icmp", "icmpv6":
		f.Proto = 1
		if parts[0] == "icmpv6" {
			f.Proto = 58
		}
		f.ICMPType, f.ICMPCode = int16(num(1)), int16(num(2))
	}
	for _, o := range opts {
		o(&f)
	}
	return f
}

func user(u string) func(*Flow) { return func(f *Flow) { f.User = u } }
func fqdn(n string) func(*Flow) { return func(f *Flow) { f.FQDN = n } }
func app(a, tls string) func(*Flow) {
	return func(f *Flow) { f.App, f.TLSVersion = a, tls }
}

// want is the part of a Decision a case checks: verdict and rule, and the
// staged ones when they differ.
type want struct {
	verdict policy.Action
	rule    string
	staged  policy.Action // "" = same as verdict
	srule   string        // "" = same as rule
	points  string        // "" = not checked; else "wl:dir:action:rule;..."
}

type flowCase struct {
	name string
	flow Flow
	want want
}

func runCases(t *testing.T, s *policy.Set, cases []flowCase) {
	t.Helper()
	e := mustCompile(t, s)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Evaluate(tc.flow)
			w := tc.want
			if w.staged == "" {
				w.staged = w.verdict
			}
			if w.srule == "" {
				w.srule = w.rule
			}
			got := want{d.Verdict, d.Rule, d.StagedVerdict, d.StagedRule, ""}
			if w.points != "" {
				got.points = pointsString(d.Points)
			}
			if got != w {
				t.Errorf("got  %+v\nwant %+v\n(decision %+v)", got, w, d)
			}
			if d.Enforced != (len(d.Points) > 0) {
				t.Errorf("Enforced = %v with %d points", d.Enforced, len(d.Points))
			}
			if info, ok := e.Rule(d.RuleID); d.Enforced && (!ok || info.Key != d.Rule) {
				t.Errorf("Rule(%d) = %+v, %v; want key %q", d.RuleID, info, ok, d.Rule)
			}
			// The linear baseline and the plain reference agree on every case.
			if lin := linearEvaluate(e, tc.flow); !reflect.DeepEqual(lin, d) {
				t.Errorf("linear scan disagrees:\n got %+v\nwant %+v", lin, d)
			}
			if ref := naiveEvaluate(s, tc.flow); !reflect.DeepEqual(ref, d) {
				t.Errorf("reference evaluator disagrees:\n ref %+v\n got %+v", ref, d)
			}
		})
	}
}

func pointsString(ps []Point) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(p.Workload + ":" + string(p.Direction) + ":" + string(p.Action) + ":" + p.Rule)
	}
	return b.String()
}

const (
	allow  = policy.ActionAllow
	drop   = policy.ActionDrop
	reject = policy.ActionReject
)

var shopInventory = []policy.Object{
	wl("web1", "app=shop,tier=web,env=prod", "10.0.1.1"),
	wl("api1", "app=shop,tier=api,env=dev", "10.0.3.1"),
	wl("db1", "app=shop,tier=db,env=prod", "10.0.2.1"),
	grp("web", policy.GroupSpec{Match: `tier == "web"`}),
	grp("api", policy.GroupSpec{Match: `tier == "api"`}),
	grp("db", policy.GroupSpec{Match: `tier == "db"`}),
	grp("frontends", policy.GroupSpec{Match: `tier in ("web", "api")`}),
}

func TestOrdering(t *testing.T) {
	s := newSet(drop, append(shopInventory,
		// Named and prioritized to lose if category did not come first.
		section("a-app", policy.CategoryApplication, -100, nil,
			rl("pg", "web", "db", "tcp/5432", allow),
			rl("icmp", "", "", "icmp", allow)),
		section("z-emergency", policy.CategoryEmergency, 100, nil,
			rl("block-pg", "", "db", "tcp/5432", drop)),
		// Priority beats name within a category.
		section("b-infra", policy.CategoryInfrastructure, 10, nil,
			rl("icmp-drop", "", "", "icmp", drop)),
		section("c-infra", policy.CategoryInfrastructure, 5, nil,
			rl("echo", "", "", "icmp/8", allow)),
		// Name breaks a priority tie.
		section("env-b", policy.CategoryEnvironment, 0, nil,
			rl("drop-9000", "", "", "tcp/9000", drop)),
		section("env-a", policy.CategoryEnvironment, 0, nil,
			rl("allow-9000", "", "", "tcp/9000", allow)),
		// Rule order within a section.
		section("env-order", policy.CategoryEnvironment, 1, nil,
			rl("allow-web", "web", "db", "tcp/6379", allow),
			rl("drop-frontends", "frontends", "db", "tcp/6379", drop),
			rl("allow-frontends", "frontends", "db", "tcp/6379", allow)),
	)...)
	runCases(t, s, []flowCase{
		{"emergency drop beats application allow", fl("10.0.1.1", "10.0.2.1", "tcp/5432"),
			want{verdict: drop, rule: "z-emergency/block-pg", points: "web1:out:drop:z-emergency/block-pg;db1:in:drop:z-emergency/block-pg"}},
		{"section priority within category", fl("10.0.1.1", "10.0.2.1", "icmp/8/0"), want{verdict: allow, rule: "c-infra/echo"}},
		{"later section of category", fl("10.0.1.1", "10.0.2.1", "icmp/0/0"), want{verdict: drop, rule: "b-infra/icmp-drop"}},
		{"name breaks priority tie", fl("10.0.3.1", "10.0.2.1", "tcp/9000"), want{verdict: allow, rule: "env-a/allow-9000"}},
		{"first rule of section", fl("10.0.1.1", "10.0.2.1", "tcp/6379"), want{verdict: allow, rule: "env-order/allow-web"}},
		{"second rule of section", fl("10.0.3.1", "10.0.2.1", "tcp/6379"), want{verdict: drop, rule: "env-order/drop-frontends"}},
		{"default drop", fl("10.0.1.1", "10.0.2.1", "tcp/1234"),
			want{verdict: drop, rule: "default", points: "web1:out:drop:default;db1:in:drop:default"}},
	})
}

func TestStaged(t *testing.T) {
	s := newSet(allow, append(shopInventory,
		section("app", policy.CategoryApplication, 0, nil,
			staged(rl("stage-drop-ssh", "web", "db", "tcp/22", drop)),
			rl("allow-ssh", "web", "db", "tcp/22", allow),
			staged(rl("stage-drop-http", "", "db", "tcp/80", drop)),
			staged(rl("stage-allow-8080", "", "", "tcp/8080", allow)),
			rl("drop-8080", "", "", "tcp/8080", drop)),
	)...)
	runCases(t, s, []flowCase{
		{"staged drop before enforced allow", fl("10.0.1.1", "10.0.2.1", "tcp/22"),
			want{verdict: allow, rule: "app/allow-ssh", staged: drop, srule: "app/stage-drop-ssh"}},
		{"staged drop over default", fl("10.0.1.1", "10.0.2.1", "tcp/80"),
			want{verdict: allow, rule: "default", staged: drop, srule: "app/stage-drop-http"}},
		{"staged allow before enforced drop", fl("10.0.1.1", "10.0.2.1", "tcp/8080"),
			want{verdict: drop, rule: "app/drop-8080", staged: allow, srule: "app/stage-allow-8080"}},
		{"nothing staged", fl("10.0.1.1", "10.0.2.1", "tcp/443"), want{verdict: allow, rule: "default"}},
	})
}

func TestNestedGroupsAndCIDROverlap(t *testing.T) {
	s := newSet(drop,
		wl("w1", "role=x", "10.1.2.3"),
		wl("w2", "", "192.168.0.1"),
		wl("w3", "role=x", "10.200.0.1"),
		grp("net8", policy.GroupSpec{IPs: []string{"10.0.0.0/8"}}),
		grp("net24", policy.GroupSpec{IPs: []string{"10.1.2.0/24"}}),
		grp("level1", policy.GroupSpec{Match: `role == "x"`}),
		grp("level2", policy.GroupSpec{Groups: []string{"level1"}}),
		grp("level3", policy.GroupSpec{Groups: []string{"level2", "net24"}}),
		grp("sink", policy.GroupSpec{IPs: []string{"192.168.0.1"}}),
		section("p", policy.CategoryApplication, 0, nil,
			rl("from-level3", "level3", "sink", "", allow),
			rl("net8-reject", "net8", "sink", "", reject)),
	)
	runCases(t, s, []flowCase{
		{"tag member through 3 levels", fl("10.1.2.3", "192.168.0.1", "tcp/80"), want{verdict: allow, rule: "p/from-level3"}},
		{"tag member outside the /24", fl("10.200.0.1", "192.168.0.1", "tcp/80"), want{verdict: allow, rule: "p/from-level3"}},
		{"CIDR member through nesting, not a workload", fl("10.1.2.9", "192.168.0.1", "tcp/80"),
			want{verdict: allow, rule: "p/from-level3", points: "w2:in:allow:p/from-level3"}},
		{"only the /8", fl("10.9.9.9", "192.168.0.1", "tcp/80"), want{verdict: reject, rule: "p/net8-reject"}},
		{"outside", fl("11.0.0.1", "192.168.0.1", "tcp/80"), want{verdict: drop, rule: "default"}},
	})

	e := mustCompile(t, s)
	groups := func(ip string) string {
		info, ok := e.Identity(e.IdentityOf(netip.MustParseAddr(ip)))
		if !ok {
			t.Fatalf("no identity for %s", ip)
		}
		return strings.Join(info.Groups, ",")
	}
	for ip, wantGroups := range map[string]string{
		"10.1.2.3":      "level1,level2,level3,net24,net8",
		"10.200.0.1":    "level1,level2,level3,net8",
		"10.1.2.0":      "level3,net24,net8",
		"10.1.2.255":    "level3,net24,net8",
		"10.1.3.0":      "net8",
		"10.0.0.0":      "net8",
		"9.255.255.255": "",
		"192.168.0.1":   "sink",
		"::1":           "",
	} {
		if got := groups(ip); got != wantGroups {
			t.Errorf("groups of %s = %q, want %q", ip, got, wantGroups)
		}
	}
	var got []string
	for _, r := range e.Identities() {
		got = append(got, r.Lo.String()+"-"+r.Hi.String()+"="+groups(r.Lo.String()))
	}
	wantRanges := []string{
		"10.0.0.0-10.1.1.255=net8",
		"10.1.2.0-10.1.2.2=level3,net24,net8",
		"10.1.2.3-10.1.2.3=level1,level2,level3,net24,net8",
		"10.1.2.4-10.1.2.255=level3,net24,net8",
		"10.1.3.0-10.200.0.0=net8",
		"10.200.0.1-10.200.0.1=level1,level2,level3,net8",
		"10.200.0.2-10.255.255.255=net8",
		"192.168.0.1-192.168.0.1=sink",
	}
	if !reflect.DeepEqual(got, wantRanges) {
		t.Errorf("Identities:\n got %q\nwant %q", got, wantRanges)
	}
	if info, _ := e.Identity(e.IdentityOf(netip.MustParseAddr("10.1.2.3"))); !info.Workloads {
		t.Errorf("identity of w1 does not say it holds workloads")
	}
	if info, _ := e.Identity(e.IdentityOf(netip.MustParseAddr("10.9.9.9"))); info.Workloads {
		t.Errorf("identity of the /8 only says it holds workloads")
	}
}

func TestTagExpressions(t *testing.T) {
	s := newSet(drop,
		wl("a", "env=dev,tier=web", "10.0.0.1"),
		wl("b", "env=prod,tier=api", "10.0.0.2"),
		wl("c", "tier=db", "10.0.0.3"),
		wl("d", "env=prod,tier=web", "10.0.0.4"),
		grp("not-prod", policy.GroupSpec{Match: `env != "prod"`}),
		grp("web-api", policy.GroupSpec{Match: `tier in ("web", "api")`}),
		section("p", policy.CategoryApplication, 0, nil, rl("r", "not-prod", "web-api", "tcp/80", allow)),
	)
	runCases(t, s, []flowCase{
		{"dev to api", fl("10.0.0.1", "10.0.0.2", "tcp/80"), want{verdict: allow, rule: "p/r"}},
		{"prod source", fl("10.0.0.2", "10.0.0.4", "tcp/80"), want{verdict: drop, rule: "default"}},
		{"untagged env is not prod", fl("10.0.0.3", "10.0.0.1", "tcp/80"), want{verdict: allow, rule: "p/r"}},
		{"db is not in the list", fl("10.0.0.1", "10.0.0.3", "tcp/80"), want{verdict: drop, rule: "default"}},
	})
}

func TestAppliedToAndDirection(t *testing.T) {
	s := newSet(allow, append(shopInventory,
		section("db-in", policy.CategoryApplication, 0, []string{"db"},
			dir(policy.DirectionIn, rl("drop-in", "", "", "tcp/5432", drop))),
		section("db-scope", policy.CategoryApplication, 1, []string{"db"},
			rl("drop-6379", "", "", "tcp/6379", drop)),
		section("web-out", policy.CategoryApplication, 2, []string{"web"},
			dir(policy.DirectionOut, rl("no-ssh-out", "", "", "tcp/22", drop))),
		section("api-both", policy.CategoryApplication, 3, []string{"api"},
			dir(policy.DirectionInOut, rl("no-telnet", "", "", "tcp/23", reject))),
	)...)
	runCases(t, s, []flowCase{
		{"scope rule does not decide the source's egress", fl("10.0.1.1", "10.0.2.1", "tcp/5432"),
			want{verdict: drop, rule: "db-in/drop-in", points: "web1:out:allow:default;db1:in:drop:db-in/drop-in"}},
		{"direction in does not decide egress of the scoped workload", fl("10.0.2.1", "10.0.1.1", "tcp/5432"),
			want{verdict: allow, rule: "default", points: "db1:out:allow:default;web1:in:allow:default"}},
		{"inout scope at egress", fl("10.0.2.1", "10.0.1.1", "tcp/6379"),
			want{verdict: drop, rule: "db-scope/drop-6379", points: "db1:out:drop:db-scope/drop-6379;web1:in:allow:default"}},
		{"out at source", fl("10.0.1.1", "10.0.2.1", "tcp/22"),
			want{verdict: drop, rule: "web-out/no-ssh-out", points: "web1:out:drop:web-out/no-ssh-out;db1:in:allow:default"}},
		{"out does not apply at ingress", fl("10.0.2.1", "10.0.1.1", "tcp/22"), want{verdict: allow, rule: "default"}},
		{"inout at egress", fl("10.0.3.1", "10.0.2.1", "tcp/23"), want{verdict: reject, rule: "api-both/no-telnet"}},
		{"inout at ingress", fl("10.0.2.1", "10.0.3.1", "tcp/23"),
			want{verdict: reject, rule: "api-both/no-telnet", points: "db1:out:allow:default;api1:in:reject:api-both/no-telnet"}},
	})
}

func TestServicesAndDefaults(t *testing.T) {
	objs := append(shopInventory,
		svc("alt-http", "tcp/8000-8100", "udp/53"),
		section("p", policy.CategoryApplication, 0, nil,
			rl("range", "web", "db", "alt-http", allow),
			rl("unreach", "", "", "icmp/3/4", allow),
			rl("echo", "", "", "icmp/8", allow),
			rl("reject-smtp", "", "", "tcp/25", reject),
			rl("v6-any", "", "", "icmpv6/128", allow)),
	)
	cases := func(dflt policy.Action) []flowCase {
		return []flowCase{
			{"range low end", fl("10.0.1.1", "10.0.2.1", "tcp/8000"), want{verdict: allow, rule: "p/range"}},
			{"range high end", fl("10.0.1.1", "10.0.2.1", "tcp/8100"), want{verdict: allow, rule: "p/range"}},
			{"above range", fl("10.0.1.1", "10.0.2.1", "tcp/8101"), want{verdict: dflt, rule: "default"}},
			{"below range", fl("10.0.1.1", "10.0.2.1", "tcp/7999"), want{verdict: dflt, rule: "default"}},
			{"udp of the service", fl("10.0.1.1", "10.0.2.1", "udp/53"), want{verdict: allow, rule: "p/range"}},
			{"wrong protocol", fl("10.0.1.1", "10.0.2.1", "udp/8000"), want{verdict: dflt, rule: "default"}},
			{"icmp type and code", fl("10.0.1.1", "10.0.2.1", "icmp/3/4"), want{verdict: allow, rule: "p/unreach"}},
			{"icmp other code", fl("10.0.1.1", "10.0.2.1", "icmp/3/3"), want{verdict: dflt, rule: "default"}},
			{"icmp any code", fl("10.0.1.1", "10.0.2.1", "icmp/8/5"), want{verdict: allow, rule: "p/echo"}},
			{"icmpv6 is not icmp", fl("10.0.1.1", "10.0.2.1", "icmpv6/8/0"), want{verdict: dflt, rule: "default"}},
			{"reject", fl("10.0.1.1", "10.0.2.1", "tcp/25"), want{verdict: reject, rule: "p/reject-smtp"}},
			{"no workload endpoint", fl("1.1.1.1", "8.8.8.8", "tcp/25"), want{verdict: allow, rule: ""}},
		}
	}
	t.Run("default allow", func(t *testing.T) { runCases(t, newSet(allow, objs...), cases(allow)) })
	t.Run("default drop", func(t *testing.T) { runCases(t, newSet(drop, objs...), cases(drop)) })

	e := mustCompile(t, newSet(drop, objs...))
	d := e.Evaluate(fl("1.1.1.1", "8.8.8.8", "tcp/25"))
	if d.Enforced || d.RuleID != 0 || d.Points != nil || d.StagedVerdict != allow {
		t.Errorf("flow between non-workloads: %+v", d)
	}
	if info, ok := e.Rule(policy.DefaultRuleID); !ok || info.Action != drop || info.Key != "default" {
		t.Errorf("Rule(default) = %+v, %v", info, ok)
	}
}

func TestIPv6(t *testing.T) {
	s := newSet(drop,
		wl("v6web", "tier=web", "fd00::1", "10.0.9.1"),
		wl("v6db", "tier=db", "fd00::2"),
		grp("web", policy.GroupSpec{Match: `tier == "web"`}),
		grp("lan6", policy.GroupSpec{IPs: []string{"fd00::/64"}}),
		section("p", policy.CategoryApplication, 0, nil,
			rl("web-to-lan6", "web", "lan6", "tcp/443", allow),
			rl("literal", "2001:db8::/32", "fd00::2", "tcp/22", allow),
			rl("ping6", "", "", "icmpv6/128", allow)),
	)
	runCases(t, s, []flowCase{
		{"v6 tag and CIDR", fl("fd00::1", "fd00::2", "tcp/443"), want{verdict: allow, rule: "p/web-to-lan6"}},
		{"v6 literal source", fl("2001:db8::5", "fd00::2", "tcp/22"),
			want{verdict: allow, rule: "p/literal", points: "v6db:in:allow:p/literal"}},
		{"v6 literal miss", fl("2001:db9::5", "fd00::2", "tcp/22"), want{verdict: drop, rule: "default"}},
		{"icmpv6 echo", fl("fd00::2", "fd00::1", "icmpv6/128/0"), want{verdict: allow, rule: "p/ping6"}},
		{"v4-mapped source is the v4 workload", fl("::ffff:10.0.9.1", "fd00::2", "tcp/443"),
			want{verdict: allow, rule: "p/web-to-lan6", points: "v6web:out:allow:p/web-to-lan6;v6db:in:allow:p/web-to-lan6"}},
		{"outside the /64", fl("fd00::1", "fd00:0:0:1::2", "tcp/443"),
			want{verdict: drop, rule: "default", points: "v6web:out:drop:default"}},
	})
}

func TestContext(t *testing.T) {
	s := newSet(drop,
		wl("rdsh", "role=rdsh", "10.0.5.1"),
		wl("jump", "role=jump", "10.0.5.2"),
		wl("web1", "tier=web", "10.0.1.1"),
		grp("admins", policy.GroupSpec{Users: []string{"alice"}}),
		grp("staff", policy.GroupSpec{Groups: []string{"admins"}, Users: []string{"carol"}}),
		grp("jump", policy.GroupSpec{Match: `role == "jump"`}),
		grp("web", policy.GroupSpec{Match: `tier == "web"`}),
		grp("example", policy.GroupSpec{FQDNs: []string{"*.example.com"}}),
		grp("exact", policy.GroupSpec{FQDNs: []string{"repo.internal"}}),
		prof("tls12", policy.ContextProfileSpec{Apps: []policy.AppMatch{{Name: "APP_TLS", MinVersion: "1.2"}}}),
		prof("corp-https", policy.ContextProfileSpec{
			Apps:  []policy.AppMatch{{Name: "APP_HTTPS"}},
			FQDNs: []string{"*.corp.example"},
		}),
		section("p", policy.CategoryApplication, 0, nil,
			rl("staff-ssh", "staff", "jump", "tcp/22", allow),
			rl("web-example", "web", "example", "tcp/443", allow),
			rl("web-repo", "web", "exact", "tcp/80", allow),
			withProfiles(rl("tls12", "web", "", "tcp/8443", allow), "tls12"),
			withProfiles(rl("corp", "web", "", "tcp/9443", allow), "corp-https")),
	)
	ext := "93.184.216.34"
	runCases(t, s, []flowCase{
		{"user in group", fl("10.0.5.1", "10.0.5.2", "tcp/22", user("alice")), want{verdict: allow, rule: "p/staff-ssh"}},
		{"user in parent group", fl("10.0.5.1", "10.0.5.2", "tcp/22", user("carol")), want{verdict: allow, rule: "p/staff-ssh"}},
		{"other user", fl("10.0.5.1", "10.0.5.2", "tcp/22", user("bob")), want{verdict: drop, rule: "default"}},
		{"no user", fl("10.0.5.1", "10.0.5.2", "tcp/22"), want{verdict: drop, rule: "default"}},
		{"wildcard name", fl("10.0.1.1", ext, "tcp/443", fqdn("api.example.com")),
			want{verdict: allow, rule: "p/web-example", points: "web1:out:allow:p/web-example"}},
		{"wildcard deeper name", fl("10.0.1.1", ext, "tcp/443", fqdn("a.b.example.com")), want{verdict: allow, rule: "p/web-example"}},
		{"wildcard not apex", fl("10.0.1.1", ext, "tcp/443", fqdn("example.com")), want{verdict: drop, rule: "default"}},
		{"name case and root dot", fl("10.0.1.1", ext, "tcp/443", fqdn("API.Example.COM.")), want{verdict: allow, rule: "p/web-example"}},
		{"other name", fl("10.0.1.1", ext, "tcp/443", fqdn("example.org")), want{verdict: drop, rule: "default"}},
		{"exact name", fl("10.0.1.1", ext, "tcp/80", fqdn("repo.internal")), want{verdict: allow, rule: "p/web-repo"}},
		{"exact name only", fl("10.0.1.1", ext, "tcp/80", fqdn("x.repo.internal")), want{verdict: drop, rule: "default"}},
		{"TLS 1.3", fl("10.0.1.1", ext, "tcp/8443", app("APP_TLS", "1.3")), want{verdict: allow, rule: "p/tls12"}},
		{"TLS 1.2", fl("10.0.1.1", ext, "tcp/8443", app("APP_TLS", "1.2")), want{verdict: allow, rule: "p/tls12"}},
		{"TLS 1.1", fl("10.0.1.1", ext, "tcp/8443", app("APP_TLS", "1.1")), want{verdict: drop, rule: "default"}},
		{"HTTPS carries TLS", fl("10.0.1.1", ext, "tcp/8443", app("APP_HTTPS", "1.2")), want{verdict: allow, rule: "p/tls12"}},
		{"no L7 context", fl("10.0.1.1", ext, "tcp/8443"), want{verdict: drop, rule: "default"}},
		{"other app", fl("10.0.1.1", ext, "tcp/8443", app("APP_SSH", "")), want{verdict: drop, rule: "default"}},
		{"profile app and name", fl("10.0.1.1", ext, "tcp/9443", app("APP_HTTPS", "1.3"), fqdn("portal.corp.example")),
			want{verdict: allow, rule: "p/corp"}},
		{"profile app without name", fl("10.0.1.1", ext, "tcp/9443", app("APP_HTTPS", "1.3")), want{verdict: drop, rule: "default"}},
		{"profile name, wrong app", fl("10.0.1.1", ext, "tcp/9443", app("APP_TLS", "1.3"), fqdn("portal.corp.example")),
			want{verdict: drop, rule: "default"}},
	})
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []policy.Object
		want string
	}{
		{"unknown group", []policy.Object{section("p", policy.CategoryApplication, 0, nil, rl("r", "nope", "", "", allow))},
			`eval: policy p: rules[0] (r): sources[0] "nope": no such group`},
		{"nesting cycle", []policy.Object{
			grp("a", policy.GroupSpec{Groups: []string{"b"}}), grp("b", policy.GroupSpec{Groups: []string{"a"}})},
			"nesting cycle"},
		{"unknown service", []policy.Object{section("p", policy.CategoryApplication, 0, nil, rl("r", "", "", "web", allow))},
			`services[0] "web": no such service`},
		{"bad tag expression", []policy.Object{grp("g", policy.GroupSpec{Match: `tier ==`})}, "eval: group g: match:"},
		{"duplicate workload address", []policy.Object{wl("a", "", "10.0.0.1"), wl("b", "", "10.0.0.1")},
			"eval: workload b: ips[0] 10.0.0.1: already the address of workload a"},
		{"bad group address", []policy.Object{grp("g", policy.GroupSpec{IPs: []string{"10.0.0.300"}})}, `eval: group g: ips[0] "10.0.0.300"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(newSet(allow, tc.objs...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRuleIDs(t *testing.T) {
	s := newSet(allow, append(shopInventory,
		section("p", policy.CategoryApplication, 0, nil, rl("a", "", "", "tcp/1", drop), rl("b", "", "", "tcp/2", drop)))...)
	delete(s.RuleIDs, "p/b")
	s.RuleIDs["gone/old"] = 500
	e := mustCompile(t, s)
	if info, ok := e.Rule(100); !ok || info.Key != "p/a" || info.Mode != policy.ModeEnforce || info.Direction != policy.DirectionInOut {
		t.Errorf("Rule(100) = %+v, %v", info, ok)
	}
	// A rule the set has no id for gets one above every known id.
	if info, ok := e.Rule(501); !ok || info.Key != "p/b" {
		t.Errorf("Rule(501) = %+v, %v", info, ok)
	}
	if d := e.Evaluate(fl("10.0.1.1", "10.0.2.1", "tcp/2")); d.RuleID != 501 {
		t.Errorf("rule id = %d, want 501", d.RuleID)
	}
	if _, ok := e.Rule(7); ok {
		t.Errorf("Rule(7) found")
	}
}

func TestEvaluateAllocs(t *testing.T) {
	s := newSet(drop, append(shopInventory,
		grp("example", policy.GroupSpec{FQDNs: []string{"*.example.com"}}),
		grp("admins", policy.GroupSpec{Users: []string{"alice"}}),
		prof("tls12", policy.ContextProfileSpec{Apps: []policy.AppMatch{{Name: "APP_TLS", MinVersion: "1.2"}}}),
		section("p", policy.CategoryApplication, 0, []string{"web", "db"},
			rl("a", "admins", "example", "tcp/443", allow),
			withProfiles(rl("b", "web", "", "tcp/443", allow), "tls12"),
			rl("c", "web", "db", "tcp/5432", allow)),
	)...)
	e := mustCompile(t, s)
	flows := []Flow{
		fl("10.0.1.1", "10.0.2.1", "tcp/5432"),
		fl("10.0.1.1", "93.184.216.34", "tcp/443", user("alice"), fqdn("a.example.com"), app("APP_TLS", "1.3")),
		fl("10.0.1.1", "10.0.2.1", "tcp/1"),
		fl("1.1.1.1", "2.2.2.2", "tcp/1"),
	}
	var d Decision
	if n := testing.AllocsPerRun(1000, func() {
		for _, f := range flows {
			e.EvaluateInto(f, &d)
		}
	}); n != 0 {
		t.Errorf("EvaluateInto allocates %v times per run of %d flows, want 0", n, len(flows))
	}
	if n := testing.AllocsPerRun(1000, func() { d = e.Evaluate(flows[0]) }); n > 1 {
		t.Errorf("Evaluate allocates %v times, want at most 1 (the Points slice)", n)
	}
}

func TestPackageDoc(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "eval.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), "Package eval ") {
		t.Errorf("eval.go has no package comment starting with \"Package eval \"")
	}
}

// TestYAMLPolicy runs the evaluator on policy text as users write it,
// decoded and validated by internal/policy.
func TestYAMLPolicy(t *testing.T) {
	data, err := os.ReadFile("testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policy.Decode("shop.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	s, err := policy.Apply(policy.NewSet(), docs)
	if err != nil {
		t.Fatal(err)
	}
	next := policy.DefaultRuleID
	s.AssignRuleIDs(func() uint32 { next++; return next })

	web, api, db, jump, rdsh := "10.1.0.11", "10.1.1.21", "10.1.2.31", "10.9.0.5", "10.9.0.6"
	runCases(t, s, []flowCase{
		{"load balancer to web", fl("192.0.2.10", web, "tcp/443"),
			want{verdict: allow, rule: "shop/lb-to-web", points: "web-1:in:allow:shop/lb-to-web"}},
		{"load balancer to web over IPv6", fl("2001:db8::5", "fd00:1::11", "tcp/443"), want{verdict: allow, rule: "shop/lb-to-web"}},
		{"web to api with TLS 1.3", fl(web, api, "tcp/8443", app("APP_TLS", "1.3")), want{verdict: allow, rule: "shop/web-to-api"}},
		{"web to api with TLS 1.0", fl(web, api, "tcp/8443", app("APP_TLS", "1.0")), want{verdict: drop, rule: "default"}},
		{"api to db", fl(api, db, "tcp/5432"), want{verdict: allow, rule: "shop/api-to-db"}},
		{"web to db, staged reject", fl(web, db, "tcp/5432"),
			want{verdict: drop, rule: "default", staged: reject, srule: "shop/web-to-db-staged"}},
		{"api to payment provider", fl(api, "198.51.100.7", "tcp/443", fqdn("eu.payments.example.com")),
			want{verdict: allow, rule: "shop/api-to-payments", points: "api-1:out:allow:shop/api-to-payments"}},
		{"api to another name", fl(api, "198.51.100.7", "tcp/443", fqdn("payments.example.com")), want{verdict: drop, rule: "default"}},
		{"admin to jump host", fl(rdsh, jump, "tcp/22", user("alice")), want{verdict: allow, rule: "admin-access/admins-to-jump"}},
		{"other user to jump host", fl(rdsh, jump, "tcp/22", user("mallory")), want{verdict: drop, rule: "default"}},
		{"jump host to db", fl(jump, db, "tcp/22"), want{verdict: allow, rule: "admin-access/jump-to-all"}},
		{"quarantined source", fl("203.0.113.66", web, "tcp/443"), want{verdict: drop, rule: "quarantine/block-attacker"}},
	})
	e := mustCompile(t, s)
	if info, ok := e.Rule(policy.DefaultRuleID); !ok || !info.Log || info.Action != drop {
		t.Errorf("default rule = %+v, %v; want drop with log", info, ok)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	bp := makeBig(2000)
	e := mustCompile(t, bp.set)
	flows := bp.flows[:400]
	want := make([]Decision, len(flows))
	for i, f := range flows {
		want[i] = e.Evaluate(f)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var d Decision
			for i, f := range flows {
				e.EvaluateInto(f, &d)
				if !reflect.DeepEqual(d, want[i]) {
					t.Errorf("flow %d decided differently under concurrency: %+v, want %+v", i, d, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
