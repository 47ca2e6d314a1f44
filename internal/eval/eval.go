// Package eval is the policy evaluator: it compiles a policy.Set into
// address identities and rule indexes and answers, for a flow, the verdict
// and the rule that decided it at each enforcement point. It defines policy
// semantics; the compliance map, what-if replay, the CLI and the data-plane
// differential tests all ask it.
package eval

import (
	"net/netip"
	"sync"

	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
)

// Flow is a connection as the evaluator sees it.
type Flow struct {
	Src, Dst netip.Addr
	Proto    uint8
	// Port is the destination port (TCP, UDP, SCTP).
	Port uint16
	// ICMPType and ICMPCode are -1 when unknown or not ICMP.
	ICMPType, ICMPCode int16
	// App is the AppID found by DPI, e.g. "APP_TLS"; "" when unknown.
	App string
	// TLSVersion is "1.0".."1.3" when the flow carries TLS.
	TLSVersion string
	// User is the user behind the connection, on the source side.
	User string
	// FQDN is the destination name.
	FQDN string
}

// Point is the decision at one enforcement point: the egress of the source
// workload or the ingress of the destination workload.
type Point struct {
	Workload  string
	Direction policy.Direction // out at the source, in at the destination
	Action    policy.Action
	RuleID    uint32
	Rule      string // "policy/rule" or "default"
	// The Staged fields are the decision if staged rules were enforced.
	StagedAction policy.Action
	StagedRuleID uint32
	StagedRule   string
}

// Decision is the verdict on a flow. The verdict is drop or reject if a
// point drops or rejects (egress first), else allow; the rule is the one
// that dropped, else the ingress point's, else the egress point's. A flow
// with no workload endpoint has no point, is allowed by rule 0 and is not
// enforced.
type Decision struct {
	Verdict  policy.Action
	RuleID   uint32
	Rule     string
	Enforced bool
	Points   []Point // egress point first
	// The Staged fields combine the points' staged decisions the same way.
	StagedVerdict policy.Action
	StagedRuleID  uint32
	StagedRule    string
}

// RuleInfo is what the data plane needs to know about a rule besides its
// match: how to name it, what it does and whether it only counts.
type RuleInfo struct {
	ID        uint32
	Key       string // "policy/rule", or "default"
	Policy    string // section name; "" for the default rule
	Name      string
	Category  policy.Category
	Action    policy.Action
	Direction policy.Direction
	Mode      policy.Mode
	Log       bool
}

// Evaluator is a compiled policy revision. It is immutable, and safe for
// concurrent use.
//
// It decides the way the data plane does. Each address family is split
// into disjoint ranges, and each range carries the identity of its exact
// set of groups (one identity per distinct set; WorldIdentity for none), so
// an address resolves to its groups by one binary search. Each group lists,
// per side, the rules that name it, in rule order; a flow's candidates are
// the lists of its endpoints' groups (plus groups joined by user or name),
// merged in rule order, and only they are checked.
type Evaluator struct {
	v4, v6 family

	workloads []string // names, by workload index

	groupNames []string // by group index; inline literals last
	// Per identity: its groups (sorted), as a window of identGroups.
	identOff    []uint32
	identGroups []int32
	identWL     []bool

	users map[string][]int32 // user -> groups (with nesting parents)
	fqdns fqdnIndex

	// rules are the compiled rules in evaluation order and info their
	// metadata; the lists rules name live in groupRefs, specs and profRefs.
	rules     []rule
	info      []RuleInfo
	dflt      RuleInfo
	byID      map[uint32]int32
	groupRefs []int32
	specs     []ports.Spec
	profRefs  []int32
	profiles  []*profile

	src    sideIndex
	dst    sideIndex
	anyAny []entry // rules with neither sources nor destinations
	// scratch holds candidate bitmaps (*[]uint64, one bit per rule).
	scratch sync.Pool

	scoped  []int32  // section -> scoped index, or -1 when applied to all
	applied []uint64 // workload x scoped section bitmap
	stride  int      // words per workload in applied
}

func (e *Evaluator) groupsOf(ident uint32) []int32 {
	return e.identGroups[e.identOff[ident]:e.identOff[ident+1]]
}

// lookup returns the identity of an address and the workload it belongs to
// (-1 if none).
func (e *Evaluator) lookup(ip netip.Addr) (uint32, int32) {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		s := e.v4.lookup(u128Of(ip))
		return s.ident, s.wl
	case ip.Is6():
		s := e.v6.lookup(u128Of(ip))
		return s.ident, s.wl
	}
	return WorldIdentity, -1
}

// IdentityOf returns the identity of an address; WorldIdentity when it is in
// no group.
func (e *Evaluator) IdentityOf(ip netip.Addr) uint32 {
	id, _ := e.lookup(ip)
	return id
}

// WorkloadOf returns the name of the workload an address belongs to.
func (e *Evaluator) WorkloadOf(ip netip.Addr) (string, bool) {
	_, wl := e.lookup(ip)
	if wl < 0 {
		return "", false
	}
	return e.workloads[wl], true
}

// Identities returns the address ranges of every identity but the world,
// IPv4 first, in address order. Addresses outside them are WorldIdentity.
func (e *Evaluator) Identities() []IdentityRange {
	return append(e.v4.ranges(), e.v6.ranges()...)
}

// Identity describes one identity.
func (e *Evaluator) Identity(id uint32) (IdentityInfo, bool) {
	if int(id) >= len(e.identWL) {
		return IdentityInfo{}, false
	}
	info := IdentityInfo{ID: id, Workloads: e.identWL[id]}
	for _, g := range e.groupsOf(id) {
		info.Groups = append(info.Groups, e.groupNames[g])
	}
	return info, true
}

// Rule returns the metadata of a rule by id; id 1 is the default rule.
func (e *Evaluator) Rule(id uint32) (RuleInfo, bool) {
	if id == policy.DefaultRuleID {
		return e.dflt, true
	}
	i, ok := e.byID[id]
	if !ok {
		return RuleInfo{}, false
	}
	return e.info[i], true
}

// Rules returns the metadata of every rule in evaluation order, the
// default rule last.
func (e *Evaluator) Rules() []RuleInfo {
	out := make([]RuleInfo, 0, len(e.info)+1)
	out = append(out, e.info...)
	return append(out, e.dflt)
}

// Evaluate decides a flow. It allocates only the returned Points slice;
// EvaluateInto reuses one.
func (e *Evaluator) Evaluate(f Flow) Decision {
	var pts [2]Point
	var d Decision
	n := e.decide(&f, &pts, &d)
	if n > 0 {
		d.Points = make([]Point, n)
		copy(d.Points, pts[:n])
	}
	return d
}

// EvaluateInto decides a flow into d, reusing d.Points' storage, so that a
// caller deciding many flows allocates nothing.
func (e *Evaluator) EvaluateInto(f Flow, d *Decision) {
	var pts [2]Point
	points := d.Points[:0]
	*d = Decision{}
	n := e.decide(&f, &pts, d)
	d.Points = append(points, pts[:n]...)
}
