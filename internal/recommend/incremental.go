package recommend

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
)

// Changes says how a draft relates to the policy of its name that the
// existing set already holds.
type Changes struct {
	// Incremental is true when the existing set held the policy: the draft
	// then keeps its rules and only adds what they do not already allow.
	Incremental bool
	// Added are the draft's new rules (all of them for a fresh draft).
	Added []string
	// Unchanged are existing allow rules that observed flows still use.
	Unchanged []string
	// Stale are existing allow rules that no flow of the window used.
	// They stay in the draft unless Options.Prune.
	Stale []string
	// Removed are the stale rules the draft drops (Options.Prune).
	Removed []string
	// Promoted are existing staged rules the draft enforces: a draft that
	// is not itself staged (Options.Mode) enforces what an earlier staged
	// recommendation added.
	Promoted []string
}

// coverage answers whether the rules of an existing policy already allow
// an observed peer pair and port, and remembers which rules did.
type coverage struct {
	rules    []coveringRule
	used     []bool
	evidence []*Evidence
}

type coveringRule struct {
	name       string
	srcs, dsts map[string]bool // nil: any
	specs      []ports.Spec    // nil: any
	// apps are the AppIDs the rule's profiles admit; nil for a rule
	// without profiles, which admits connections whatever their app.
	apps map[string]bool
}

// newCoverage reads the allow rules of prev; services are resolved through
// the existing set. A service that cannot be resolved covers nothing, so
// the draft proposes a rule rather than trusting it.
func newCoverage(prev *policy.Policy, existing *policy.Set) *coverage {
	c := &coverage{}
	set := func(xs []string) map[string]bool {
		if len(xs) == 0 {
			return nil
		}
		m := make(map[string]bool, len(xs))
		for _, x := range xs {
			m[x] = true
		}
		return m
	}
	for _, rule := range prev.Spec.Rules {
		if rule.Action != policy.ActionAllow {
			continue
		}
		cr := coveringRule{name: rule.Name, srcs: set(rule.Sources), dsts: set(rule.Destinations)}
		if len(rule.Profiles) > 0 {
			if cr.apps = profileApps(rule.Profiles, existing); len(cr.apps) == 0 {
				continue
			}
		}
		for _, svc := range rule.Services {
			specs := []string{svc}
			if s, ok := existing.Services[svc]; ok && s != nil {
				specs = s.Spec.Ports
			}
			for _, spec := range specs {
				if p, err := ports.Parse(spec); err == nil {
					cr.specs = append(cr.specs, p)
				}
			}
		}
		if len(rule.Services) > 0 && len(cr.specs) == 0 {
			continue
		}
		c.rules = append(c.rules, cr)
	}
	c.used = make([]bool, len(c.rules))
	c.evidence = make([]*Evidence, len(c.rules))
	return c
}

// profileApps are the AppIDs profiles admit whatever the version and
// name: a profile with a version or FQDN condition, or one the set lacks,
// admits none here, so that the draft proposes a rule rather than trusting
// a condition it cannot check on its evidence.
func profileApps(profiles []string, existing *policy.Set) map[string]bool {
	apps := map[string]bool{}
	for _, n := range profiles {
		p, ok := existing.ContextProfiles[n]
		if !ok || p == nil || len(p.Spec.FQDNs) > 0 {
			continue
		}
		for _, a := range p.Spec.Apps {
			if a.MinVersion == "" && a.MaxVersion == "" {
				apps[a.Name] = true
			}
		}
	}
	return apps
}

func sideCovers(rule map[string]bool, peers []string) bool {
	if rule == nil {
		return true
	}
	if peers == nil {
		return false // any is more than any list
	}
	for _, p := range peers {
		if !rule[p] {
			return false
		}
	}
	return true
}

// find returns the first rule allowing srcs to dsts on k for connections
// of app ("" not identified), or -1.
func (c *coverage) find(srcs, dsts []string, k portKey, app string) int {
	for i := range c.rules {
		cr := &c.rules[i]
		if !sideCovers(cr.srcs, srcs) || !sideCovers(cr.dsts, dsts) {
			continue
		}
		if cr.apps != nil && !cr.apps[app] {
			continue
		}
		if cr.specs == nil {
			return i
		}
		for _, s := range cr.specs {
			port, typ := k.port, ports.Any
			if ports.IsICMP(k.proto) {
				port, typ = 0, int16(k.port)
			}
			if s.Matches(k.proto, port, typ, ports.Any) {
				return i
			}
		}
	}
	return -1
}

// credit marks rule i used by edge e and adds e's evidence to it once.
func (c *coverage) credit(i int, e *edge, credited map[int]bool) {
	c.used[i] = true
	if credited[i] {
		return
	}
	credited[i] = true
	if c.evidence[i] == nil {
		c.evidence[i] = &Evidence{}
	}
	c.evidence[i].merge(&e.ev)
}

// uncovered returns what of edge e (between peers as peers renders them)
// the existing rules do not allow, or nil when they allow all of it. An
// edge with an outside end is checked address by address; the part left
// is the uncovered addresses on the uncovered ports.
func (c *coverage) uncovered(k peerKey, app string, e *edge, peers func(int32, *edge) ([]string, string)) *edge {
	srcs, _ := peers(k.src, e)
	dsts, _ := peers(k.dst, e)
	credited := map[int]bool{}
	out := &edge{ev: e.ev}
	listed := (k.src == external) != (k.dst == external) && len(e.ext) > 0 &&
		(k.src == external && srcs != nil || k.dst == external && dsts != nil)
	if !listed {
		for pk := range e.ports.all() {
			if i := c.find(srcs, dsts, pk, app); i >= 0 {
				c.credit(i, e, credited)
			} else {
				out.ports.add(pk)
			}
		}
		if len(out.ports.few)+len(out.ports.many) == 0 {
			return nil
		}
		out.ext = e.ext
		return out
	}
	addrs := slices.SortedFunc(maps.Keys(e.ext), netip.Addr.Compare)
	for pk := range e.ports.all() {
		for _, a := range addrs {
			one := []string{a.String()}
			s, d := srcs, dsts
			if k.src == external {
				s = one
			} else {
				d = one
			}
			if i := c.find(s, d, pk, app); i >= 0 {
				c.credit(i, e, credited)
				continue
			}
			out.ports.add(pk)
			if out.ext == nil {
				out.ext = map[netip.Addr]struct{}{}
			}
			out.ext[a] = struct{}{}
		}
	}
	if out.ext == nil {
		return nil
	}
	return out
}
