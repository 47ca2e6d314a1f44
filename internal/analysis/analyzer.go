package analysis

import (
	"fmt"
	"net/netip"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// Options configures an Analyzer. The zero value maps flows without
// classifying them.
type Options struct {
	// Eval is the policy flows are classified against (compliance); nil
	// leaves the classes out.
	Eval *eval.Evaluator
	// Candidate is the policy flows are replayed against (what-if),
	// compared with Eval, which it needs.
	Candidate *eval.Evaluator
	// NoDiscovery leaves untagged workloads untagged instead of asking
	// discovery where they belong.
	NoDiscovery bool
}

// Analyzer aggregates flow records, one Add at a time, into edges between
// endpoints (workloads, and the external addresses seen), and rolls them up
// to any level when asked. Memory grows with distinct endpoint pairs and
// distinct flows (for the decision cache), not with records. It is not
// safe for concurrent use.
type Analyzer struct {
	opts      Options
	workloads []*policy.Workload
	byName    map[string]int32
	// byAddr resolves an address to its endpoint: a workload's index, or
	// an external's index after the workloads (in ext).
	byAddr   map[netip.Addr]int32
	prefixes []wlPrefix
	ext      []netip.Addr

	edges map[edgeKey]*fineEdge
	// cache holds what each distinct flow resolved to (its endpoints, edge,
	// service and decisions): a week of records is mostly the same few
	// thousand flows, so a record costs one lookup.
	cache   map[flowKey]*cached
	changes map[changeKey]*change
	d       eval.Decision // scratch for the evaluator

	total  fineEdge
	places []Place // computed on the first result
}

type wlPrefix struct {
	p  netip.Prefix
	wl int32
}

type edgeKey struct{ src, dst int32 }

// fineEdge is the traffic of one client endpoint to one server endpoint.
type fineEdge struct {
	conns, drops   uint64 // connection records, drop records
	droppedPackets uint64
	sent, received uint64 // bytes client -> server, server -> client
	packets        uint64 // of connections, both directions
	first, last    int64  // unix ns; 0 = unset
	classes        [numClasses]uint64
	wouldDrop      uint64
	wouldAllow     uint64
	services       []serviceCount
	// users counts connections per user (the records' User), nil until a
	// record has one; at most maxEdgeUsers names.
	users map[string]uint64
}

// maxEdgeUsers bounds the users an edge remembers.
const maxEdgeUsers = 64

type service struct {
	proto uint8
	// port is the destination port, or ICMP type<<8 | code.
	port uint16
	// app is the AppID the agent's L7 reader saw, "" when it did not
	// inspect the connection.
	app string
}

type serviceCount struct {
	svc          service
	conns, drops uint64
}

// flowKey is what the evaluator decides on.
type flowKey struct {
	src, dst netip.Addr
	proto    uint8
	port     uint16
	icmpType int16
	icmpCode int16
	// user is the connection's user (directory rules decide by it).
	user string
	// app and tlsVersion are the L7 context (profile rules decide by it).
	app, tlsVersion string
}

type cached struct {
	srcName, dstName string // the record's names this was resolved with
	src, dst         int32
	edge             *fineEdge
	svc              int // index in edge.services
	d                *decided
}

// changeKey is a changed flow between two endpoints.
type changeKey struct {
	flowKey
	src, dst int32
}

// decided is a flow's outcome under Eval (cur) and Candidate (cand).
type decided struct {
	cur, cand outcome
}

type outcome struct {
	verdict policy.Action
	rule    uint32
	class   Class
}

// change is one distinct flow whose verdict the candidate changes.
type change struct {
	key      flowKey
	src, dst int32
	d        *decided
	flows    uint64
	bytes    uint64
	last     int64
}

// New returns an Analyzer over the inventory's workloads. Tags are read
// from the workloads; those without an app or tier are placed by
// discovery from the records added.
func New(workloads []*policy.Workload, opts Options) (*Analyzer, error) {
	if opts.Candidate != nil && opts.Eval == nil {
		return nil, fmt.Errorf("analysis: a candidate policy needs the current one to compare with")
	}
	a := &Analyzer{
		opts:      opts,
		workloads: workloads,
		byName:    make(map[string]int32, len(workloads)),
		byAddr:    make(map[netip.Addr]int32, len(workloads)),
		edges:     map[edgeKey]*fineEdge{},
		cache:     map[flowKey]*cached{},
		changes:   map[changeKey]*change{},
	}
	a.d.Points = make([]eval.Point, 0, 2)
	a.indexWorkloads(workloads)
	return a, nil
}

// endpoint resolves one end of a record: the workload the record names if
// the inventory still has it (addresses move; the name is what the agent
// saw), else the workload holding the address, else an external address.
func (a *Analyzer) endpoint(name string, addr netip.Addr) int32 {
	if name != "" {
		if i, ok := a.byName[name]; ok {
			return i
		}
	}
	if i, ok := a.byAddr[addr]; ok {
		return i
	}
	addr = addr.Unmap()
	if i, ok := a.byAddr[addr]; ok {
		return i
	}
	for _, p := range a.prefixes {
		if p.p.Contains(addr) {
			a.byAddr[addr] = p.wl
			return p.wl
		}
	}
	i := int32(len(a.workloads) + len(a.ext))
	a.ext = append(a.ext, addr)
	a.byAddr[addr] = i
	return i
}

func keyOf(r *flow.Record) flowKey {
	k := flowKey{src: r.Src, dst: r.Dst, proto: r.Proto, port: r.DstPort, icmpType: -1, icmpCode: -1, user: r.User,
		app: r.App, tlsVersion: r.TLSVersion}
	if r.IsICMP() {
		k.port, k.icmpType, k.icmpCode = 0, int16(r.ICMPType), int16(r.ICMPCode)
	}
	return k
}

func serviceOf(r *flow.Record) service {
	if r.IsICMP() {
		return service{proto: r.Proto, port: uint16(r.ICMPType)<<8 | uint16(r.ICMPCode), app: r.App}
	}
	return service{proto: r.Proto, port: r.DstPort, app: r.App}
}

// Add counts one record. Records of one connection are one row in the
// store, so each connection counts once; a drop record counts as one
// blocked attempt with its packets.
func (a *Analyzer) Add(r *flow.Record) {
	k := keyOf(r)
	c := a.cache[k]
	if c == nil || c.srcName != r.SrcWorkload || c.dstName != r.DstWorkload {
		// The same addresses named otherwise (an address that moved)
		// resolve again; the cache keeps the latest naming.
		c = a.resolve(k, r, c)
	}
	e := c.edge
	drop := r.Kind == flow.KindDrop
	e.count(r, drop)
	a.total.count(r, drop)
	sc := &e.services[c.svc]
	if drop {
		sc.drops++
	} else {
		sc.conns++
	}
	if r.User != "" {
		e.addUser(r.User, 1)
	}

	if a.opts.Eval == nil {
		return
	}
	d := c.d
	cls := d.cur.class
	if drop {
		cls = Red
	}
	e.classes[cls]++
	a.total.classes[cls]++
	if a.opts.Candidate == nil {
		return
	}
	before, after := blocks(d.cur.verdict), blocks(d.cand.verdict)
	if before == after {
		return
	}
	if after {
		e.wouldDrop++
		a.total.wouldDrop++
	} else {
		e.wouldAllow++
		a.total.wouldAllow++
	}
	ck := changeKey{k, c.src, c.dst}
	ch := a.changes[ck]
	if ch == nil {
		ch = &change{key: k, src: c.src, dst: c.dst, d: d}
		a.changes[ck] = ch
	}
	ch.flows++
	ch.bytes += r.SrcBytes + r.DstBytes
	ch.last = max(ch.last, r.Seen.UnixNano())
}

// resolve finds a flow's endpoints, edge and service, and decides it
// unless an earlier naming of the same flow already did.
func (a *Analyzer) resolve(k flowKey, r *flow.Record, prev *cached) *cached {
	c := &cached{srcName: r.SrcWorkload, dstName: r.DstWorkload}
	c.src = a.endpoint(r.SrcWorkload, r.Src)
	c.dst = a.endpoint(r.DstWorkload, r.Dst)
	ek := edgeKey{c.src, c.dst}
	c.edge = a.edges[ek]
	if c.edge == nil {
		c.edge = &fineEdge{}
		a.edges[ek] = c.edge
	}
	c.svc = c.edge.service(serviceOf(r))
	switch {
	case prev != nil:
		c.d = prev.d
	case a.opts.Eval != nil:
		c.d = a.decide(k)
	}
	a.cache[k] = c
	return c
}

func (e *fineEdge) count(r *flow.Record, drop bool) {
	if drop {
		e.drops++
		e.droppedPackets += r.SrcPackets
	} else {
		e.conns++
		e.sent += r.SrcBytes
		e.received += r.DstBytes
		e.packets += r.SrcPackets + r.DstPackets
	}
	if !r.Start.IsZero() {
		if s := r.Start.UnixNano(); e.first == 0 || s < e.first {
			e.first = s
		}
	}
	if !r.Seen.IsZero() {
		e.last = max(e.last, r.Seen.UnixNano())
	}
}

// service returns the index of s in e.services, adding it.
func (e *fineEdge) service(s service) int {
	for i := range e.services {
		if e.services[i].svc == s {
			return i
		}
	}
	e.services = append(e.services, serviceCount{svc: s})
	return len(e.services) - 1
}

// addUser counts n connections of user on e.
func (e *fineEdge) addUser(user string, n uint64) {
	if e.users == nil {
		e.users = map[string]uint64{}
	}
	if _, ok := e.users[user]; ok || len(e.users) < maxEdgeUsers {
		e.users[user] += n
	}
}

// merge adds o's counts to e (services are merged by the caller).
func (e *fineEdge) merge(o *fineEdge) {
	for u, n := range o.users {
		e.addUser(u, n)
	}
	e.conns += o.conns
	e.drops += o.drops
	e.droppedPackets += o.droppedPackets
	e.sent += o.sent
	e.received += o.received
	e.packets += o.packets
	if o.first != 0 && (e.first == 0 || o.first < e.first) {
		e.first = o.first
	}
	e.last = max(e.last, o.last)
	for c := range e.classes {
		e.classes[c] += o.classes[c]
	}
	e.wouldDrop += o.wouldDrop
	e.wouldAllow += o.wouldAllow
}

func (a *Analyzer) decide(k flowKey) *decided {
	f := eval.Flow{Src: k.src, Dst: k.dst, Proto: k.proto, Port: k.port, ICMPType: k.icmpType, ICMPCode: k.icmpCode, User: k.user,
		App: k.app, TLSVersion: k.tlsVersion}
	d := &decided{cur: a.outcome(a.opts.Eval, f)}
	if a.opts.Candidate != nil {
		d.cand = a.outcome(a.opts.Candidate, f)
	}
	return d
}

func (a *Analyzer) outcome(ev *eval.Evaluator, f eval.Flow) outcome {
	ev.EvaluateInto(f, &a.d)
	return outcome{verdict: a.d.Verdict, rule: a.d.RuleID, class: Classify(&a.d)}
}

// Classify is a decision's compliance class (see Class for the
// precedence). A drop record is Red whatever the decision.
func Classify(d *eval.Decision) Class {
	switch {
	case blocks(d.Verdict):
		return Red
	case blocks(d.StagedVerdict):
		return Dashed
	case !d.Enforced:
		return Amber
	}
	for i := range d.Points {
		if d.Points[i].RuleID != policy.DefaultRuleID {
			return Green
		}
	}
	return Amber
}

func isICMP(proto uint8) bool { return proto == 1 || proto == 58 }
