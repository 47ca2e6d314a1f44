// Package span compiles a policy revision into the desired state of one
// host's data plane: from the evaluator (and the policy.Set it was compiled
// from) to the nft.HostState of that host — the rules applied to the host's
// own workloads as ordered per-workload entry lists, and only the address
// identities those entries name.
//
// # Semantics
//
// The local workloads of a host are the set's workloads whose spec.host is
// the host and that have a spec.interface. For each of them (W) and each
// direction (egress: W is the source; ingress: W is the destination), the
// list holds, in the evaluator's order (category, section priority, section
// name, rule order), the rules whose appliedTo covers W, whose direction
// includes the point and whose local side (sources at egress, destinations
// at ingress; empty = any) holds W's address; each becomes one entry per
// peer identity of its other side (nft.AnyPeer when that side is empty) and
// per port spec, carrying the rule's id, action and log flag. The kernel
// takes the first matching entry, so each point decides as the evaluator
// does, and the two points combine in the ct mark as the evaluator combines
// them.
//
// A rule with context profiles becomes L7 entries: the same entries, each
// pointing at the rule's nft.Profile (the apps of all its profiles, which
// the evaluator matches as "any profile, any app"). The kernel marks a
// connection that reaches one pending and the agent's queue reader
// resumes the walk once it knows the application (internal/l7), so a
// connection decides as the evaluator decides its flow with that L7
// context; with no application known, as the flow without context.
//
// Destination names become FQDN entries (egress only): a rule whose
// destinations include groups with fqdns (nesting included) gets, besides
// the entries of its destination identities, one entry per port spec for
// any peer whose address is in the host's FQDN set of those patterns
// (nft.Entry.FQDN; HostState.FQDNSets, numbered in order of first use, so
// equal policies give equal bytes). A rule whose context profiles all name
// FQDNs and no apps makes every one of its entries an FQDN entry of the
// profiles' patterns. The agent's DNS snooper fills the sets with the
// addresses its workloads' answers bound to matching names; the kernel
// takes an FQDN entry only where it is the first match and the destination
// is in its set, so an earlier entry still wins. A flow "has" a name when
// one of its workloads resolved it to the destination address lately. When
// the rule's source holds only one family of the workload's addresses, its
// set is limited to that family (nft.FQDNSet.Family).
//
// Users become session peers at ingress: given the port-range sessions of
// multi-user (RDSH) hosts (WithSessions), the source ports of each session
// whose user a rule source names (users, directoryGroups) are a peer of
// their own, a member of its address's groups and of its user's, and get
// an identity like any other peer (nft.HostState.Sessions), so that the
// destination's host decides alice's connections by alice's rules and
// bob's, from the same address, by bob's. Sessions only name a user where
// a session's port range holds the source port, as the manager's
// directory.Table.Who does for flow records.
//
// L7 rules share the host's one queue, so the host fails open
// (HostState.L7FailOpen) only when every section with L7 entries in its
// span says l7FailMode: open.
//
// What the kernel cannot see is left out, and the evaluator agrees on every
// flow without that context:
//
//   - rules with a context profile that names FQDNs together with apps (or
//     next to app profiles), and FQDN profiles at an ingress point: the
//     queue reader does not know names, the FQDN sets hold destinations;
//   - the FQDN part of a rule that also has an L7 or FQDN profile
//     (Stats.FQDNSkipped): a name would have to match two pattern lists;
//   - users of source groups outside port-range sessions (a user's
//     whole-address login, a user with no session): they add no addresses,
//     so they give no identity and no entry; a user at the egress point
//     of the host it is logged on to; FQDNs of destination groups at
//     ingress;
//   - staged rules: they never decide a flow; what they would have done is
//     counted by replaying flow records through the evaluator.
//
// # Identities
//
// A host's identities are numbered for that host alone. Only identities
// that the host's entries name get address ranges; identities that every
// entry treats alike are merged into one; every other address is
// nft.World, which only AnyPeer entries and the defaults decide — the same
// as an identity without entries of its own would get. Identities are
// numbered in the order of their lowest address, not by the evaluator's
// numbering (which changes with every compile), so a change elsewhere in the
// policy leaves this host's state byte-identical.
//
// The kernel keys a workload's decisions by interface and peer, not by the
// workload's own address. When a rule's local side holds a workload's
// addresses of one family only (its IPv4 address is in a CIDR group, its
// IPv6 address is not), its entries name only peers of that family; when
// that rule's peer side is any, its peers are every identity of the family,
// World included, and IPv6 addresses no range names get an identity of
// their own (those of IPv4 stay World). When two addresses of one family disagree, the state cannot
// be expressed and Host fails with an *InexactError naming them.
//
// The egress list decides every packet that enters from the workload's
// interface, whatever its source address; the evaluator has an egress point
// only when the source is the workload's address. Keeping a workload to its
// own addresses is anti-spoofing's job, not this package's.
package span

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
)

// Sides of a rule.
const (
	src = 0
	dst = 1
)

// Address families, as bits of a mask.
const (
	fam4   uint8 = 1
	fam6   uint8 = 2
	famAll       = fam4 | fam6
)

// Compiler computes host states from one compiled revision. It indexes the
// revision once, so computing many hosts costs little more than their
// spans. It is safe for concurrent use.
type Compiler struct {
	e   *eval.Evaluator
	set *policy.Set

	rules []rule
	// anySide lists, per side, the rules whose side is empty (any);
	// bySide, per side and group, the rules naming the group there.
	anySide [2][]int32
	bySide  [2][][]int32
	// identsOf lists, per group, the identities holding it, ascending.
	identsOf [][]uint32
	// ranges holds each identity's address ranges per family.
	ranges map[uint32]*[2][]addrRange

	peerOnce [2][]sync.Once
	peers    [2][][]uint32 // per side and rule: identities of that side

	// profiles are the L7 conditions of rules, in rule order; a rule's
	// profile is an index into it, -1 for none.
	profiles []nft.Profile

	// sessions are the input's port-range sessions; sessIdent numbers
	// each distinct group set of a session (its address's groups and its
	// user's) as an identity after the evaluator's, whose ports holds the
	// sessions that have it (sessions.go).
	sessions  []Session
	sessGroup map[uint32][]int32
	sessPorts map[uint32][]sessRange
}

type rule struct {
	info eval.RuleInfo
	m    eval.RuleMatch
	dir  uint8 // egress and/or ingress bits
	svcs []service
	v    nft.Verdict
	// profile indexes Compiler.profiles; -1: no profiles, or one the
	// kernel path cannot check (l7Skip).
	profile int
	l7Skip  bool
	// dstFQDN are the name patterns of the destination groups (nesting
	// included); profFQDN, those of FQDN-only context profiles, which make
	// every entry of the rule an FQDN entry. Sorted, lower case.
	dstFQDN, profFQDN []string
}

// Points, as bits.
const (
	egress  uint8 = 1
	ingress uint8 = 2
)

type service struct {
	proto uint8
	ports nft.PortRange
}

type addrRange struct{ lo, hi netip.Addr }

// Option configures a Compiler.
type Option func(*Compiler)

// NewCompiler indexes the evaluator e, compiled from set, for Host.
func NewCompiler(e *eval.Evaluator, set *policy.Set, opts ...Option) (*Compiler, error) {
	c := &Compiler{e: e, set: set, ranges: map[uint32]*[2][]addrRange{}}
	for _, o := range opts {
		o(c)
	}
	n := e.NumRules()
	c.rules = make([]rule, n)
	for i := range 2 {
		c.bySide[i] = make([][]int32, e.NumGroups())
		c.peerOnce[i] = make([]sync.Once, n)
		c.peers[i] = make([][]uint32, n)
	}
	for i := range n {
		info, m := e.RuleAt(i)
		r := rule{info: info, m: m}
		switch info.Direction {
		case policy.DirectionIn:
			r.dir = ingress
		case policy.DirectionOut:
			r.dir = egress
		default:
			r.dir = egress | ingress
		}
		a, err := action(info.Action)
		if err != nil {
			return nil, fmt.Errorf("span: rule %s: %w", info.Key, err)
		}
		r.v = nft.Verdict{Rule: info.ID, Action: a, Log: info.Log}
		r.svcs = services(m.Services)
		r.profile = -1
		r.dstFQDN = c.groupFQDNs(m.Destinations, map[string][]string{})
		if m.Profiles > 0 {
			r.profFQDN = c.profileFQDNs(info)
		}
		if m.Profiles > 0 && r.profFQDN == nil {
			p, ok := c.ruleProfile(info)
			if ok {
				r.profile = len(c.profiles)
				c.profiles = append(c.profiles, p)
			} else {
				r.l7Skip = true
			}
		}
		c.rules[i] = r
		for side, gs := range [2][]int32{m.Sources, m.Destinations} {
			if len(gs) == 0 {
				c.anySide[side] = append(c.anySide[side], int32(i))
			}
			for _, g := range gs {
				c.bySide[side][g] = append(c.bySide[side][g], int32(i))
			}
		}
	}
	c.identsOf = make([][]uint32, e.NumGroups())
	for id := range e.NumIdentities() {
		for _, g := range e.IdentityGroups(uint32(id)) {
			c.identsOf[g] = append(c.identsOf[g], uint32(id))
		}
	}
	for _, r := range e.Identities() {
		rs := c.ranges[r.ID]
		if rs == nil {
			rs = new([2][]addrRange)
			c.ranges[r.ID] = rs
		}
		f := famIndex(r.Lo)
		rs[f] = append(rs[f], addrRange{r.Lo, r.Hi})
	}
	c.indexSessions()
	return c, nil
}

// ruleProfile returns the rule's L7 condition: the union of the apps of its
// context profiles. ok is false when a profile names FQDNs (the queue
// reader does not know destination names) or the rule cannot be found.
func (c *Compiler) ruleProfile(info eval.RuleInfo) (nft.Profile, bool) {
	pol := c.set.Policies[info.Policy]
	if pol == nil {
		return nft.Profile{}, false
	}
	i := slices.IndexFunc(pol.Spec.Rules, func(r policy.Rule) bool { return r.Name == info.Name })
	if i < 0 {
		return nft.Profile{}, false
	}
	var out nft.Profile
	for _, name := range pol.Spec.Rules[i].Profiles {
		cp := c.set.ContextProfiles[name]
		if cp == nil || len(cp.Spec.FQDNs) > 0 {
			return nft.Profile{}, false
		}
		if len(cp.Spec.Apps) == 0 {
			// A profile without apps or names: any identified application.
			out.Apps = append(out.Apps, nft.AppMatch{})
		}
		for _, a := range cp.Spec.Apps {
			out.Apps = append(out.Apps, nft.AppMatch{Name: a.Name, MinVersion: a.MinVersion, MaxVersion: a.MaxVersion})
		}
	}
	return out, len(out.Apps) > 0
}

// ForHost returns the state of host at revision: NewCompiler(e, set) then
// Host. Use a Compiler to compute several hosts of one revision.
func ForHost(e *eval.Evaluator, set *policy.Set, host string, revision int64) (*nft.HostState, error) {
	c, err := NewCompiler(e, set)
	if err != nil {
		return nil, err
	}
	st, _, err := c.Host(host, revision)
	return st, err
}

// Hosts returns the hosts that have at least one local workload (a
// workload with a host and an interface), sorted.
func Hosts(set *policy.Set) []string {
	seen := map[string]bool{}
	for _, w := range set.Workloads {
		if w != nil && w.Spec.Host != "" && w.Spec.Interface != "" {
			seen[w.Spec.Host] = true
		}
	}
	out := make([]string, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// Stats describes the size of one host's state.
type Stats struct {
	Workloads int
	// Rules counts the distinct rules with at least one entry.
	Rules int
	// Entries counts entries over every workload and both directions.
	Entries    int
	Identities int // distinct identities with address ranges
	Ranges     int
	// Staged and L7Skipped count the distinct rules left out because they
	// are staged or need an L7 context the kernel path cannot check (FQDN
	// profiles), among those that apply to a local workload.
	Staged, L7Skipped int
	// L7 counts the distinct rules with L7 entries.
	L7 int
	// FQDN counts the distinct rules with FQDN entries; FQDNSkipped the
	// rules whose destination names the kernel cannot check (a name
	// condition together with an L7 profile or an FQDN profile).
	FQDN, FQDNSkipped int
	// OneFamily counts the rules, per workload and direction, that hold the
	// workload's addresses of one family only (see the package doc).
	OneFamily int
}

// InexactError reports local workloads whose addresses of one family a
// rule's local side tells apart: the kernel keys decisions by interface,
// so no state decides both addresses as the evaluator does.
type InexactError struct {
	Host     string
	Problems []string // one line per workload, rule and direction
}

func (e *InexactError) Error() string {
	return fmt.Sprintf("span: host %s: cannot enforce exactly: %s", e.Host, strings.Join(e.Problems, "; "))
}

// atom is an identity's addresses of one family: identity<<1 | family
// (0 IPv4, 1 IPv6). The world's atoms are 0 and 1.
type atom uint64

const (
	world4 atom = 0
	world6 atom = 1
)

func atomOf(id uint32, f int) atom { return atom(id)<<1 | atom(f) }
func (a atom) ident() uint32       { return uint32(a >> 1) }
func (a atom) fam() int            { return int(a & 1) }

// draft is one rule's line in a list before identities are final: its peers
// are atoms, or any peer of the families in anyFams.
type draft struct {
	rule    int32
	anyFams uint8 // famAll: AnyPeer; fam4 or fam6: every peer of that family
	atoms   []atom
	// fqdn, when set, adds an FQDN entry for any peer whose address an
	// answer for one of these patterns bound (the rule's FQDN groups).
	fqdn     []string
	fqdnFams uint8 // the families of the workload the rule holds
}

// local is a local workload with what its lists depend on.
type local struct {
	name, iface string
	wl          int
	idents      [2][]uint32 // identities of its addresses, per family
	lists       [2][]int32  // egress, ingress: indexes into drafts
}

// Host computes the state of host at revision.
func (c *Compiler) Host(host string, revision int64) (*nft.HostState, Stats, error) {
	if revision < 0 {
		return nil, Stats{}, fmt.Errorf("span: host %s: revision %d: want >= 0", host, revision)
	}
	locals, err := c.locals(host)
	if err != nil {
		return nil, Stats{}, err
	}
	var (
		drafts  []draft
		inexact []string
		oneFam  int
		staged  = map[int32]bool{}
		l7Skip  = map[int32]bool{}
		fqSkip  = map[int32]bool{}
	)
	for li := range locals {
		w := &locals[li]
		for pi, point := range []uint8{egress, ingress} {
			localSide, peerSide := src, dst
			if point == ingress {
				localSide, peerSide = dst, src
			}
			for _, ri := range c.candidates(w, localSide) {
				r := &c.rules[ri]
				if r.dir&point == 0 || !c.e.SectionAppliesTo(r.m.Section, w.wl) {
					continue
				}
				fams, problem := c.localFams(w, side(r.m, localSide))
				switch {
				case fams == 0 && problem == "":
					continue
				case r.info.Mode == policy.ModeStaged:
					staged[ri] = true
					continue
				case r.l7Skip, r.profFQDN != nil && point == ingress:
					// FQDN sets hold destinations: an ingress point
					// cannot check the name of its own workload.
					l7Skip[ri] = true
					continue
				case r.m.NoService:
					continue
				case problem != "":
					inexact = append(inexact, fmt.Sprintf("workload %s: %s rule %s (id %d): %s",
						w.name, pointName(point), r.info.Key, r.info.ID, problem))
					continue
				}
				d := draft{rule: ri}
				if fams != famAll {
					oneFam++
				}
				if point == egress && len(r.dstFQDN) > 0 {
					switch {
					case r.profile >= 0 || r.profFQDN != nil:
						fqSkip[ri] = true
					default:
						d.fqdn, d.fqdnFams = r.dstFQDN, fams
					}
				}
				if len(side(r.m, peerSide)) == 0 {
					d.anyFams = fams
				} else {
					for _, id := range c.peerIdents(ri, peerSide) {
						if peerSide == dst && c.isSession(id) {
							continue // a user is only ever a source
						}
						for f := range 2 {
							if fams&(1<<f) != 0 && c.hasRanges(id, f) {
								d.atoms = append(d.atoms, atomOf(id, f))
							}
						}
					}
					if len(d.atoms) == 0 && d.fqdn == nil {
						continue // its peers are users or names only
					}
				}
				w.lists[pi] = append(w.lists[pi], int32(len(drafts)))
				drafts = append(drafts, d)
			}
		}
	}
	if len(inexact) > 0 {
		return nil, Stats{}, &InexactError{Host: host, Problems: inexact}
	}

	ids, ranges, sessions := c.identities(drafts)
	dflt, err := action(c.e.DefaultRule().Action)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("span: host %s: default rule: %w", host, err)
	}
	dv := nft.Verdict{Rule: policy.DefaultRuleID, Action: dflt, Log: c.e.DefaultRule().Log}
	st := &nft.HostState{
		Revision:       uint64(revision),
		Identities:     ranges,
		Sessions:       sessions,
		EgressDefault:  dv,
		IngressDefault: dv,
	}
	used := map[uint32]bool{}
	stats := Stats{Workloads: len(locals), Ranges: len(ranges), Staged: len(staged), L7Skipped: len(l7Skip), OneFamily: oneFam, FQDNSkipped: len(fqSkip)}
	// Host profiles are numbered in order of first use, so that the
	// state's bytes depend only on its entries.
	hostProfile := map[int]int{}
	profileOf := func(ri int32) int {
		p := c.rules[ri].profile
		if p < 0 {
			return 0
		}
		if n, ok := hostProfile[p]; ok {
			return n
		}
		st.Profiles = append(st.Profiles, c.profiles[p])
		hostProfile[p] = len(st.Profiles)
		return len(st.Profiles)
	}
	// FQDN sets too, by their patterns.
	hostFQDN := map[string]int{}
	fqdnOf := func(pats []string, fams uint8) int {
		var family uint8
		switch fams {
		case fam4:
			family = 4
		case fam6:
			family = 6
		}
		k := fmt.Sprint(family, pats)
		if n, ok := hostFQDN[k]; ok {
			return n
		}
		st.FQDNSets = append(st.FQDNSets, nft.FQDNSet{Patterns: slices.Clone(pats), Family: family})
		hostFQDN[k] = len(st.FQDNSets)
		return len(st.FQDNSets)
	}
	l7 := map[uint32]bool{}
	fq := map[uint32]bool{}
	for _, w := range locals {
		nw := nft.Workload{Name: w.name, Interface: w.iface}
		for pi := range 2 {
			list := c.entries(drafts, w.lists[pi], ids, profileOf, fqdnOf)
			for _, en := range list {
				used[en.Rule] = true
				if en.Profile != 0 {
					l7[en.Rule] = true
				}
				if en.FQDN != 0 {
					fq[en.Rule] = true
				}
			}
			stats.Entries += len(list)
			if pi == 0 {
				nw.Egress = list
			} else {
				nw.Ingress = list
			}
		}
		st.Workloads = append(st.Workloads, nw)
	}
	stats.Rules = len(used)
	stats.L7 = len(l7)
	st.L7FailOpen = c.failOpen(l7)
	stats.FQDN = len(fq)
	distinct := map[nft.Identity]bool{}
	for _, r := range ranges {
		distinct[r.Identity] = true
	}
	stats.Identities = len(distinct)
	if err := st.Validate(); err != nil {
		return nil, Stats{}, fmt.Errorf("span: host %s: %w", host, err)
	}
	return st, stats, nil
}

// failOpen reports whether the host's queue may let payload through while
// no reader runs: only when every section with L7 entries in the span says
// l7FailMode: open. One queue serves the whole host, so the strictest
// section decides; a host without L7 entries stays fail-closed.
func (c *Compiler) failOpen(l7 map[uint32]bool) bool {
	if len(l7) == 0 {
		return false
	}
	for _, r := range c.rules {
		if !l7[r.info.ID] {
			continue
		}
		pol := c.set.Policies[r.info.Policy]
		if pol == nil || pol.Spec.L7FailMode != policy.FailOpen {
			return false
		}
	}
	return true
}

// locals returns the host's local workloads, sorted by name.
func (c *Compiler) locals(host string) ([]local, error) {
	var names []string
	for name, w := range c.set.Workloads {
		if w != nil && w.Spec.Host == host && w.Spec.Interface != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]local, 0, len(names))
	for _, name := range names {
		w := c.set.Workloads[name]
		wl, ok := c.e.WorkloadIndex(name)
		if !ok {
			return nil, fmt.Errorf("span: host %s: workload %s: not in the evaluator (compiled from another set?)", host, name)
		}
		l := local{name: name, iface: w.Spec.Interface, wl: wl}
		for j, s := range w.Spec.IPs {
			a, ok := workloadAddr(s)
			if !ok {
				return nil, fmt.Errorf("span: host %s: workload %s: ips[%d] %q: not an address", host, name, j, s)
			}
			if got, _ := c.e.WorkloadOf(a); got != name {
				return nil, fmt.Errorf("span: host %s: workload %s: ips[%d] %s: the evaluator gives it to %q", host, name, j, a, got)
			}
			f := famIndex(a)
			l.idents[f] = append(l.idents[f], c.e.IdentityOf(a))
		}
		for f := range 2 {
			slices.Sort(l.idents[f])
			l.idents[f] = slices.Compact(l.idents[f])
		}
		out = append(out, l)
	}
	return out, nil
}

// workloadAddr reads a workload address the way the evaluator does: an
// address, or an interface address with its prefix length.
func workloadAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		p, perr := netip.ParsePrefix(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		a = p.Addr()
	}
	return a.Unmap().WithZone(""), true
}

func famIndex(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 0
	}
	return 1
}

func side(m eval.RuleMatch, s int) []int32 {
	if s == src {
		return m.Sources
	}
	return m.Destinations
}

func pointName(p uint8) string {
	if p == egress {
		return "egress"
	}
	return "ingress"
}

// candidates returns, in evaluation order, the rules whose local side is any
// or names a group of one of w's addresses.
func (c *Compiler) candidates(w *local, localSide int) []int32 {
	out := slices.Clone(c.anySide[localSide])
	for f := range 2 {
		for _, id := range w.idents[f] {
			for _, g := range c.e.IdentityGroups(id) {
				out = append(out, c.bySide[localSide][g]...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// localFams returns the families of w's addresses that the local side gs
// holds. A family w has no address of follows the other family, so that a
// single-stack workload never splits its peers; with no address at all,
// only an empty side holds it. problem is set when two addresses of one
// family disagree.
func (c *Compiler) localFams(w *local, gs []int32) (fams uint8, problem string) {
	if len(gs) == 0 {
		return famAll, ""
	}
	var decided uint8
	for f := range 2 {
		in, out := 0, 0
		for _, id := range w.idents[f] {
			if intersects(c.e.IdentityGroups(id), gs) {
				in++
			} else {
				out++
			}
		}
		switch {
		case in > 0 && out > 0:
			return 0, fmt.Sprintf("holds %d of its %d IPv%d addresses", in, in+out, 4+2*f)
		case in > 0:
			fams |= 1 << f
			decided |= 1 << f
		case out > 0:
			decided |= 1 << f
		}
	}
	switch decided {
	case fam4:
		if fams&fam4 != 0 {
			fams |= fam6
		}
	case fam6:
		if fams&fam6 != 0 {
			fams |= fam4
		}
	}
	return fams, ""
}

// intersects reports whether two sorted lists share an element.
func intersects(a, b []int32) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			return true
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return false
}

// peerIdents returns the identities whose groups meet the rule's side,
// ascending; computed once per rule and side.
func (c *Compiler) peerIdents(ri int32, s int) []uint32 {
	c.peerOnce[s][ri].Do(func() {
		var out []uint32
		for _, g := range side(c.rules[ri].m, s) {
			out = append(out, c.identsOf[g]...)
		}
		slices.Sort(out)
		c.peers[s][ri] = slices.Compact(out)
	})
	return c.peers[s][ri]
}

func (c *Compiler) hasRanges(id uint32, f int) bool {
	if ps, ok := c.sessPorts[id]; ok {
		return slices.ContainsFunc(ps, func(r sessRange) bool { return famIndex(r.addr) == f })
	}
	rs := c.ranges[id]
	return rs != nil && len(rs[f]) > 0
}

// identities merges the atoms every draft treats alike into classes, gives
// each class an identity and returns, per atom the drafts name (and the
// world's two atoms), its identity, with the address ranges of the state.
// Atoms of a class that no address reaches (the world's IPv6 atom when
// named prefixes cover every IPv6 address) are left out of the map: entries
// for them would never match.
//
// The class of world4 is nft.World and needs no ranges: every address no
// range names falls to it. The other classes get the ranges of their atoms;
// when world6 is not in World's class, its class also gets every IPv6
// address outside the named atoms.
func (c *Compiler) identities(drafts []draft) (map[atom]nft.Identity, []nft.IdentityRange, []nft.SessionRange) {
	// Every atom a draft names, and the world's, which stand for every
	// atom no draft names.
	named := map[atom]bool{world4: true, world6: true}
	for _, d := range drafts {
		for _, a := range d.atoms {
			named[a] = true
		}
	}
	atoms := make([]atom, 0, len(named))
	for a := range named {
		atoms = append(atoms, a)
	}
	slices.Sort(atoms)
	sig := make(map[atom][]byte, len(atoms))
	for k, d := range drafts {
		add := func(a atom) { sig[a] = binary.AppendUvarint(sig[a], uint64(k)) }
		if d.anyFams == famAll {
			continue
		}
		for _, a := range d.atoms {
			add(a)
		}
		if d.anyFams != 0 {
			for _, a := range atoms {
				if d.anyFams&(1<<a.fam()) != 0 {
					add(a)
				}
			}
		}
	}
	type class struct {
		atoms  []atom
		ranges []addrRange
		sess   []sessRange
		id     nft.Identity
		live   bool
	}
	byKey := map[string]*class{}
	classOf := make(map[atom]*class, len(atoms))
	var classes []*class
	for _, a := range atoms {
		k := string(sig[a])
		cl := byKey[k]
		if cl == nil {
			cl = &class{}
			byKey[k] = cl
			classes = append(classes, cl)
		}
		cl.atoms = append(cl.atoms, a)
		classOf[a] = cl
	}
	worldClass := classOf[world4]
	worldClass.id, worldClass.live = nft.World, true
	var v6named []addrRange
	for _, a := range atoms {
		if a.ident() == eval.WorldIdentity {
			continue
		}
		if ps, ok := c.sessPorts[a.ident()]; ok {
			cl := classOf[a]
			for _, p := range ps {
				if famIndex(p.addr) == a.fam() {
					cl.sess = append(cl.sess, p)
				}
			}
			continue
		}
		rs := c.ranges[a.ident()][a.fam()]
		if a.fam() == 1 {
			v6named = append(v6named, rs...)
		}
		if cl := classOf[a]; cl != worldClass {
			cl.ranges = append(cl.ranges, rs...)
		}
	}
	if cl := classOf[world6]; cl != worldClass {
		cl.ranges = append(cl.ranges, complement6(v6named)...)
	}
	var ranked []*class
	for _, cl := range classes {
		if cl == worldClass {
			continue
		}
		if len(cl.ranges) == 0 && len(cl.sess) == 0 {
			continue
		}
		slices.SortFunc(cl.ranges, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
		slices.SortFunc(cl.sess, compareSessRange)
		ranked = append(ranked, cl)
	}
	// Classes with addresses by their lowest address, then those of
	// sessions only by their first session.
	slices.SortFunc(ranked, func(a, b *class) int {
		switch {
		case len(a.ranges) > 0 && len(b.ranges) > 0:
			return a.ranges[0].lo.Compare(b.ranges[0].lo)
		case len(a.ranges) > 0:
			return -1
		case len(b.ranges) > 0:
			return 1
		}
		return compareSessRange(a.sess[0], b.sess[0])
	})
	var out []nft.IdentityRange
	for i, cl := range ranked {
		cl.id, cl.live = nft.Identity(i+1), true
		for _, r := range cl.ranges {
			out = append(out, nft.IdentityRange{Lo: r.lo, Hi: r.hi, Identity: cl.id})
		}
	}
	slices.SortFunc(out, func(a, b nft.IdentityRange) int { return a.Lo.Compare(b.Lo) })
	// Neighbours of one identity are one range.
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && merged[n-1].Identity == r.Identity && merged[n-1].Hi.Next() == r.Lo {
			merged[n-1].Hi = r.Hi
			continue
		}
		merged = append(merged, r)
	}
	ids := make(map[atom]nft.Identity, len(atoms))
	for a, cl := range classOf {
		if cl.live {
			ids[a] = cl.id
		}
	}
	if len(merged) == 0 {
		merged = nil
	}
	// A session keeps its class's identity even when that is World: it
	// must still override its address's identity.
	var sessions []nft.SessionRange
	for _, cl := range classes {
		for _, p := range cl.sess {
			sessions = append(sessions, nft.SessionRange{Addr: p.addr, Ports: p.ports, Identity: cl.id})
		}
	}
	slices.SortFunc(sessions, func(a, b nft.SessionRange) int {
		return compareSessRange(sessRange{a.Addr, a.Ports}, sessRange{b.Addr, b.Ports})
	})
	return ids, merged, sessions
}

// complement6 returns the IPv6 addresses outside rs.
func complement6(rs []addrRange) []addrRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
	var out []addrRange
	next := netip.IPv6Unspecified()
	last := netip.AddrFrom16([16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	done := false
	for _, r := range rs {
		if r.lo.Compare(next) > 0 {
			out = append(out, addrRange{next, r.lo.Prev()})
		}
		if r.hi == last {
			done = true
			break
		}
		next = r.hi.Next()
	}
	if !done {
		out = append(out, addrRange{next, last})
	}
	return out
}

// entries turns a list of drafts into kernel entries, leaving out entries
// that an earlier entry shadows entirely.
// An L7 entry may not match, so it shadows nothing after it.
func (c *Compiler) entries(drafts []draft, list []int32, ids map[atom]nft.Identity, profileOf func(int32) int, fqdnOf func([]string, uint8) int) []nft.Entry {
	var out []nft.Entry
	type key struct {
		peer  nft.Identity
		proto uint8
		ports nft.PortRange
	}
	type protoKey struct {
		peer  nft.Identity
		proto uint8
	}
	seen := map[key]bool{}
	wide := map[protoKey]bool{} // entries with all ports, of one protocol or any
	shadowed := func(k key) bool {
		if seen[k] || seen[key{nft.AnyPeer, k.proto, k.ports}] {
			return true
		}
		if len(wide) == 0 {
			return false
		}
		return wide[protoKey{k.peer, k.proto}] || wide[protoKey{k.peer, nft.ProtoAny}] ||
			wide[protoKey{nft.AnyPeer, k.proto}] || wide[protoKey{nft.AnyPeer, nft.ProtoAny}]
	}
	var peers []nft.Identity
	for _, k := range list {
		d := &drafts[k]
		r := &c.rules[d.rule]
		peers = peers[:0]
		switch {
		case d.anyFams == famAll:
			peers = append(peers, nft.AnyPeer)
		default:
			for _, a := range d.atoms {
				if id, ok := ids[a]; ok {
					peers = append(peers, id)
				}
			}
			if d.anyFams != 0 {
				for a, id := range ids {
					if d.anyFams&(1<<a.fam()) != 0 {
						peers = append(peers, id)
					}
				}
			}
			slices.Sort(peers)
			peers = slices.Compact(peers)
		}
		cond := 0 // an FQDN profile: every entry is an FQDN entry
		if r.profFQDN != nil && len(peers) > 0 {
			cond = fqdnOf(r.profFQDN, famAll) // the peers carry the family
		}
		for _, p := range peers {
			for _, s := range r.svcs {
				k := key{p, s.proto, s.ports}
				if shadowed(k) {
					continue
				}
				if r.profile >= 0 {
					out = append(out, nft.Entry{Peer: p, Proto: s.proto, Ports: s.ports, Verdict: r.v, Profile: profileOf(d.rule)})
					continue
				}
				if cond != 0 { // may not match, so it shadows nothing
					out = append(out, nft.Entry{Peer: p, Proto: s.proto, Ports: s.ports, Verdict: r.v, FQDN: cond})
					continue
				}
				seen[k] = true
				if k.ports == nft.AllPorts {
					wide[protoKey{k.peer, k.proto}] = true
				}
				out = append(out, nft.Entry{Peer: p, Proto: s.proto, Ports: s.ports, Verdict: r.v})
			}
		}
		if d.fqdn == nil {
			continue
		}
		// Destinations named by FQDN groups: any address the set holds.
		n := 0
		for _, s := range r.svcs {
			if shadowed(key{nft.AnyPeer, s.proto, s.ports}) {
				continue
			}
			if n == 0 {
				n = fqdnOf(d.fqdn, d.fqdnFams)
			}
			out = append(out, nft.Entry{Peer: nft.AnyPeer, Proto: s.proto, Ports: s.ports, Verdict: r.v, FQDN: n})
		}
	}
	return out
}

// groupFQDNs returns the FQDN patterns that make a destination a member of
// one of the groups gs (their own and their nested groups'), normalized as
// the evaluator reads them, sorted; nil when none. memo caches by name.
func (c *Compiler) groupFQDNs(gs []int32, memo map[string][]string) []string {
	var out []string
	var walk func(name string, depth int) []string
	walk = func(name string, depth int) []string {
		if p, ok := memo[name]; ok {
			return p
		}
		g := c.set.Groups[name]
		if g == nil || depth > 64 { // a literal, or a cycle validation refused
			return nil
		}
		var ps []string
		for _, f := range g.Spec.FQDNs {
			ps = append(ps, normalizeFQDN(f))
		}
		for _, n := range g.Spec.Groups {
			ps = append(ps, walk(n, depth+1)...)
		}
		memo[name] = ps
		return ps
	}
	for _, g := range gs {
		out = append(out, walk(c.e.GroupName(g), 0)...)
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// profileFQDNs returns the union of the FQDN patterns of the rule's context
// profiles when every one of them names FQDNs and no apps (the evaluator
// then matches the destination name alone); nil otherwise.
func (c *Compiler) profileFQDNs(info eval.RuleInfo) []string {
	pol := c.set.Policies[info.Policy]
	if pol == nil {
		return nil
	}
	i := slices.IndexFunc(pol.Spec.Rules, func(r policy.Rule) bool { return r.Name == info.Name })
	if i < 0 || len(pol.Spec.Rules[i].Profiles) == 0 {
		return nil
	}
	var out []string
	for _, name := range pol.Spec.Rules[i].Profiles {
		cp := c.set.ContextProfiles[name]
		if cp == nil || len(cp.Spec.Apps) > 0 || len(cp.Spec.FQDNs) == 0 {
			return nil
		}
		for _, f := range cp.Spec.FQDNs {
			out = append(out, normalizeFQDN(f))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// normalizeFQDN is the evaluator's reading of a name: lower case, no root
// dot.
func normalizeFQDN(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// services turns port specs into kernel (protocol, port range) pairs; no
// spec means any.
func services(specs []ports.Spec) []service {
	if len(specs) == 0 {
		return []service{{nft.ProtoAny, nft.AllPorts}}
	}
	var out []service
	for _, s := range specs {
		switch {
		case s.Proto == 0:
			out = append(out, service{nft.ProtoAny, nft.AllPorts})
		case ports.HasPorts(s.Proto):
			out = append(out, service{s.Proto, nft.Ports(s.Lo, s.Hi)})
		case ports.IsICMP(s.Proto):
			switch {
			case s.ICMPType < 0 && s.ICMPCode < 0:
				out = append(out, service{s.Proto, nft.AllPorts})
			case s.ICMPCode < 0:
				out = append(out, service{s.Proto, nft.ICMPType(uint8(s.ICMPType))})
			case s.ICMPType >= 0:
				out = append(out, service{s.Proto, nft.ICMPTypeCode(uint8(s.ICMPType), uint8(s.ICMPCode))})
			default: // a code of any type: the parser never makes one
				for t := range 256 {
					out = append(out, service{s.Proto, nft.ICMPTypeCode(uint8(t), uint8(s.ICMPCode))})
				}
			}
		default:
			out = append(out, service{s.Proto, nft.AllPorts})
		}
	}
	return out
}

func action(a policy.Action) (nft.Action, error) {
	switch a {
	case policy.ActionAllow:
		return nft.Allow, nil
	case policy.ActionDrop:
		return nft.Drop, nil
	case policy.ActionReject:
		return nft.Reject, nil
	}
	return 0, fmt.Errorf("action %q: want allow, drop or reject", a)
}

var _ error = (*InexactError)(nil)
