package span

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// A random policy generator and a reference model of the kernel, shared by
// the property test and the kernel test.

// universe is what random policies are made of: the workloads (with host,
// interface and addresses; tags are drawn per policy), the prefixes groups
// and inline literals use, and the port specs services use.
type universe struct {
	workloads []*policy.Workload
	prefixes  []string
	specs     []string
	// l7 allows context profiles, user and FQDN members.
	l7 bool
	// noProfiles leaves context profiles out even with l7: probes without
	// payload cannot check them (a connection that waits for an L7
	// decision passes its handshake in the kernel).
	noProfiles bool
}

var tagExprs = []string{
	`app == "shop"`,
	`app == "crm"`,
	`tier in ("web", "db")`,
	`env != "prod"`,
	`app == "shop" && tier == "web"`,
	`tier == "db" || env == "dev"`,
	`has(app)`,
	`!(env == "prod")`,
	`app not in ("crm")`,
	`all()`,
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func randomTags(rng *rand.Rand) map[string]string {
	tags := map[string]string{}
	if rng.IntN(5) > 0 {
		tags["app"] = pick(rng, []string{"shop", "crm"})
	}
	tags["tier"] = pick(rng, []string{"web", "api", "db"})
	tags["env"] = pick(rng, []string{"prod", "dev"})
	return tags
}

func header(kind policy.Kind, name string) policy.Header {
	return policy.Header{APIVersion: policy.APIVersion, Kind: kind, Metadata: policy.Metadata{Name: name}}
}

// randomSet draws a valid policy over u.
func randomSet(t testing.TB, rng *rand.Rand, u universe) *policy.Set {
	t.Helper()
	s := policy.NewSet()
	var addrs []string
	for _, w := range u.workloads {
		w = w.DeepCopy()
		w.Spec.Tags = randomTags(rng)
		s.Put(w)
		addrs = append(addrs, w.Spec.IPs...)
	}
	literal := func() string {
		if rng.IntN(2) == 0 {
			return pick(rng, addrs)
		}
		return pick(rng, u.prefixes)
	}

	var groups []string
	for i := range 3 + rng.IntN(6) {
		name := fmt.Sprintf("g%d", i)
		g := &policy.Group{Header: header(policy.KindGroup, name)}
		for g.Spec.Match == "" && len(g.Spec.IPs) == 0 && len(g.Spec.Groups) == 0 && len(g.Spec.Users) == 0 && len(g.Spec.FQDNs) == 0 {
			if rng.IntN(2) == 0 {
				g.Spec.Match = pick(rng, tagExprs)
			}
			if rng.IntN(3) == 0 {
				for range 1 + rng.IntN(2) {
					g.Spec.IPs = append(g.Spec.IPs, literal())
				}
			}
			if len(groups) > 0 && rng.IntN(4) == 0 {
				// Only earlier groups: no cycles.
				for range 1 + rng.IntN(2) {
					if n := pick(rng, groups); !slices.Contains(g.Spec.Groups, n) {
						g.Spec.Groups = append(g.Spec.Groups, n)
					}
				}
			}
			if u.l7 && rng.IntN(8) == 0 {
				g.Spec.Users = []string{pick(rng, []string{"alice", "bob"})}
			}
			if u.l7 && rng.IntN(8) == 0 {
				g.Spec.FQDNs = []string{pick(rng, []string{"pay.example.com", "*.example.org"})}
			}
		}
		s.Put(g)
		groups = append(groups, name)
	}

	var services []string
	for i := range rng.IntN(4) {
		name := fmt.Sprintf("svc%d", i)
		sv := &policy.Service{Header: header(policy.KindService, name)}
		for range 1 + rng.IntN(3) {
			sv.Spec.Ports = append(sv.Spec.Ports, pick(rng, u.specs))
		}
		s.Put(sv)
		services = append(services, name)
	}
	var profiles []string
	if u.l7 && !u.noProfiles && rng.IntN(2) == 0 {
		p := &policy.ContextProfile{Header: header(policy.KindContextProfile, "tls12")}
		p.Spec.Apps = []policy.AppMatch{{Name: "APP_TLS", MinVersion: "1.2"}}
		s.Put(p)
		profiles = append(profiles, "tls12")
	}
	if u.l7 && !u.noProfiles && len(profiles) == 0 && rng.IntN(2) == 0 {
		// Names only: the kernel checks them with FQDN sets. Never next
		// to an app profile: a rule naming both is left out of the kernel.
		p := &policy.ContextProfile{Header: header(policy.KindContextProfile, "names")}
		p.Spec.FQDNs = []string{pick(rng, []string{"*.example.org", "pay.example.com"})}
		s.Put(p)
		profiles = append(profiles, "names")
	}

	peers := func() []string {
		if rng.IntN(3) == 0 {
			return nil
		}
		var out []string
		for range 1 + rng.IntN(2) {
			var x string
			if rng.IntN(4) == 0 {
				x = literal()
			} else {
				x = pick(rng, groups)
			}
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
		return out
	}
	for i := range 1 + rng.IntN(4) {
		name := fmt.Sprintf("p%d", i)
		p := &policy.Policy{Header: header(policy.KindPolicy, name)}
		p.Spec.Category = pick(rng, policy.Categories)
		p.Spec.Priority = rng.IntN(3)
		if rng.IntN(3) == 0 {
			p.Spec.AppliedTo = []string{pick(rng, groups)}
		}
		for j := range 1 + rng.IntN(6) {
			r := policy.Rule{
				Name:         fmt.Sprintf("r%d", j),
				Sources:      peers(),
				Destinations: peers(),
				Action:       pick(rng, []policy.Action{policy.ActionAllow, policy.ActionAllow, policy.ActionDrop, policy.ActionReject}),
				Direction:    pick(rng, []policy.Direction{"", policy.DirectionIn, policy.DirectionOut, policy.DirectionInOut}),
				Log:          rng.IntN(5) == 0,
			}
			if rng.IntN(5) == 0 {
				r.Mode = policy.ModeStaged
			}
			if rng.IntN(4) > 0 {
				for range 1 + rng.IntN(2) {
					if len(services) > 0 && rng.IntN(2) == 0 {
						r.Services = append(r.Services, pick(rng, services))
					} else {
						r.Services = append(r.Services, pick(rng, u.specs))
					}
				}
			}
			if len(profiles) > 0 && rng.IntN(5) == 0 {
				r.Profiles = profiles
			}
			p.Spec.Rules = append(p.Spec.Rules, r)
		}
		s.Put(p)
	}
	s.Default.Spec.Action = pick(rng, []policy.Action{policy.ActionAllow, policy.ActionDrop, policy.ActionReject})
	s.Default.Spec.Log = rng.IntN(2) == 0
	next := uint32(100)
	s.AssignRuleIDs(func() uint32 { next += 1 + uint32(rng.IntN(3)); return next })
	if err := s.Validate(nil).Err(); err != nil {
		t.Fatalf("generator made an invalid set: %v", err)
	}
	return s
}

// lookup decides one point of a host state as nft.go documents the kernel:
// the peer address's identity is that of the range holding it, else World;
// the first entry of the workload's list (in order) whose peer is that
// identity or AnyPeer, whose protocol is the packet's or ProtoAny, and whose
// range holds the port decides; else the direction's default. (The kernel
// looks up the peer's own entries, then AnyPeer's; nft's compiler copies
// into each peer's entries the AnyPeer entries that precede them, so the two
// lookups give this first match.) port is the destination port, or ICMP
// type<<8|code.
//
// An L7 entry matches only when ctx satisfies its profile: the queue
// reader's resumed walk once it knows the connection's application (with
// none known, ctx is empty and matches no profile, as a flow without
// context matches no profile in the evaluator).
func lookup(st *nft.HostState, wl string, ingress bool, peer netip.Addr, proto uint8, port uint16, ctx nft.L7Context, fqdn string) (nft.Verdict, bool) {
	i := slices.IndexFunc(st.Workloads, func(w nft.Workload) bool { return w.Name == wl })
	if i < 0 {
		return nft.Verdict{}, false
	}
	id := nft.World
	for _, r := range st.Identities {
		if r.Lo.Compare(peer) <= 0 && peer.Compare(r.Hi) <= 0 {
			id = r.Identity
			break
		}
	}
	list, def := st.Workloads[i].Egress, st.EgressDefault
	if ingress {
		list, def = st.Workloads[i].Ingress, st.IngressDefault
	}
	for _, e := range list {
		if (e.Peer == id || e.Peer == nft.AnyPeer) && (e.Proto == nft.ProtoAny || e.Proto == proto) &&
			e.Ports.Lo <= port && port <= e.Ports.Hi {
			if e.Profile != 0 && !st.Profiles[e.Profile-1].Matches(ctx) {
				continue
			}
			// The snooper put the destination in the set when the flow's
			// name matches one of its patterns.
			if e.FQDN != 0 {
				fs := st.FQDNSets[e.FQDN-1]
				if !nameMatches(fs.Patterns, fqdn) || fs.Family == 4 && !peer.Is4() || fs.Family == 6 && peer.Is4() {
					continue
				}
			}
			return e.Verdict, true
		}
	}
	return def, true
}

// nameMatches is the evaluator's reading of FQDN patterns.
func nameMatches(pats []string, name string) bool {
	if name == "" {
		return false
	}
	for _, p := range pats {
		if p == "*" || p == name || strings.HasPrefix(p, "*.") && len(name) > len(p)-1 && strings.HasSuffix(name, p[1:]) {
			return true
		}
	}
	return false
}

// kernelPort is what the kernel matches a flow's port against.
func kernelPort(f eval.Flow) uint16 {
	switch f.Proto {
	case nft.ProtoICMP, nft.ProtoICMPv6:
		return uint16(f.ICMPType)<<8 | uint16(f.ICMPCode)
	case nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP:
		return f.Port
	}
	return 0
}

// placement says where a workload address is enforced.
type placement struct{ host, workload string }

// dataPlane is every host's state of one revision.
type dataPlane struct {
	states map[string]*nft.HostState
	where  map[netip.Addr]placement
}

func newDataPlane(t testing.TB, e *eval.Evaluator, s *policy.Set) (*dataPlane, []Stats, error) {
	t.Helper()
	c, err := NewCompiler(e, s)
	if err != nil {
		return nil, nil, err
	}
	dp := &dataPlane{states: map[string]*nft.HostState{}, where: map[netip.Addr]placement{}}
	var stats []Stats
	for _, h := range Hosts(s) {
		st, stat, err := c.Host(h, 7)
		if err != nil {
			return nil, nil, err
		}
		dp.states[h] = st
		stats = append(stats, stat)
	}
	for name, w := range s.Workloads {
		if w.Spec.Host == "" || w.Spec.Interface == "" {
			continue
		}
		for _, ip := range w.Spec.IPs {
			a, _ := workloadAddr(ip)
			dp.where[a] = placement{w.Spec.Host, name}
		}
	}
	return dp, stats, nil
}

// kernelPoint is the decision of one enforcement point in the data plane.
type kernelPoint struct {
	ingress bool
	v       nft.Verdict
}

// decide runs a flow through the data plane: egress at the source's host
// if the source is a local workload there, then ingress at the
// destination's. The flow's verdict and rule are those a ct mark ends with:
// the dropping point's, else ingress, else egress.
func (dp *dataPlane) decide(t testing.TB, f eval.Flow) (nft.Verdict, []kernelPoint) {
	var pts []kernelPoint
	port := kernelPort(f)
	ctx := nft.L7Context{App: f.App, TLSVersion: f.TLSVersion}
	if p, ok := dp.where[f.Src]; ok {
		v, ok := lookup(dp.states[p.host], p.workload, false, f.Dst, f.Proto, port, ctx, f.FQDN)
		if !ok {
			t.Fatalf("workload %s not in the state of host %s", p.workload, p.host)
		}
		pts = append(pts, kernelPoint{false, v})
		if v.Action != nft.Allow {
			return v, pts
		}
	}
	if p, ok := dp.where[f.Dst]; ok {
		v, ok := lookup(dp.states[p.host], p.workload, true, f.Src, f.Proto, port, ctx, f.FQDN)
		if !ok {
			t.Fatalf("workload %s not in the state of host %s", p.workload, p.host)
		}
		pts = append(pts, kernelPoint{true, v})
		return v, pts
	}
	if len(pts) == 0 {
		return nft.Verdict{Action: nft.Allow}, nil
	}
	return pts[0].v, pts
}

func verdictOf(e *eval.Evaluator, a policy.Action, id uint32) nft.Verdict {
	act, _ := action(a)
	v := nft.Verdict{Rule: id, Action: act}
	if info, ok := e.Rule(id); ok {
		v.Log = info.Log
	}
	return v
}

// compare checks the data plane's decision of f against the evaluator's,
// point by point, and returns a description of the first difference.
func compare(t testing.TB, e *eval.Evaluator, dp *dataPlane, f eval.Flow) (eval.Decision, string) {
	d := e.Evaluate(f)
	got, pts := dp.decide(t, f)
	if !d.Enforced {
		if len(pts) != 0 {
			return d, fmt.Sprintf("evaluator: not enforced; kernel points %+v", pts)
		}
		return d, ""
	}
	// The kernel stops at a dropping egress point; the evaluator still
	// reports ingress.
	want := d.Points
	if len(want) == 2 && want[0].Action != policy.ActionAllow {
		want = want[:1]
	}
	if len(pts) != len(want) {
		return d, fmt.Sprintf("points: kernel %+v, evaluator %+v", pts, d.Points)
	}
	for i, p := range want {
		if w := verdictOf(e, p.Action, p.RuleID); pts[i].v != w || pts[i].ingress != (p.Direction == policy.DirectionIn) {
			return d, fmt.Sprintf("%s point of %s: kernel %+v, evaluator %s by %s (%+v)", p.Direction, p.Workload, pts[i].v, p.Action, p.Rule, w)
		}
	}
	if w := verdictOf(e, d.Verdict, d.RuleID); got != w {
		return d, fmt.Sprintf("flow: kernel %+v, evaluator %s by %s (%+v)", got, d.Verdict, d.Rule, w)
	}
	return d, ""
}

func dumpSet(s *policy.Set) string {
	b, err := policy.EncodeSet(s)
	if err != nil {
		return err.Error()
	}
	ids, _ := json.Marshal(s.RuleIDs)
	return string(b) + "ruleIDs: " + string(ids) + "\n"
}

func dumpStates(dp *dataPlane) string {
	var sb strings.Builder
	peer := func(p nft.Identity) string {
		if p == nft.AnyPeer {
			return "any"
		}
		return fmt.Sprint(uint32(p))
	}
	for _, h := range slices.Sorted(maps.Keys(dp.states)) {
		st := dp.states[h]
		fmt.Fprintf(&sb, "host %s: defaults egress %v ingress %v\n", h, st.EgressDefault, st.IngressDefault)
		for _, r := range st.Identities {
			fmt.Fprintf(&sb, "  %v-%v = %d\n", r.Lo, r.Hi, r.Identity)
		}
		for _, w := range st.Workloads {
			for _, l := range []struct {
				dir  string
				list []nft.Entry
			}{{"egress", w.Egress}, {"ingress", w.Ingress}} {
				fmt.Fprintf(&sb, "  %s %s:\n", w.Name, l.dir)
				for _, e := range l.list {
					fmt.Fprintf(&sb, "    peer %s proto %d ports %d-%d -> %v\n", peer(e.Peer), e.Proto, e.Ports.Lo, e.Ports.Hi, e.Verdict)
				}
			}
		}
	}
	return sb.String()
}
