package analysis

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// Map is the traffic rolled up to one level.
type Map struct {
	Level Level
	Nodes []Node // by id
	Edges []Edge // busiest first
	Total Traffic
	// Alerts counts the IDS alerts of the window (AddAlerts).
	Alerts uint64
}

// Node is one node of the map.
type Node struct {
	ID    string
	Level Level
	// Env, App and Tier place the node in the hierarchy, as far as its
	// level goes ("" above it; a workload node has all three).
	Env, App, Tier string
	Workload       string
	// External nodes are addresses that are no workload: one per address
	// at the workload level (Addr), one per Range above it.
	External bool
	Addr     netip.Addr
	Range    string
	// Members is how many endpoints (workloads or external addresses) of
	// the node took part in the flows; Proposed how many of its workloads
	// discovery placed.
	Members  int
	Proposed int
	// Traffic counts every flow the node is an end of, once.
	Traffic Traffic
	// Alerts counts the IDS alerts the node is an end of, once (AddAlerts).
	Alerts uint64
}

// Traffic is what a set of records adds up to.
type Traffic struct {
	// Connections are connection records; Drops are drop records (blocked
	// attempts, DroppedPackets packets).
	Connections, Drops uint64
	DroppedPackets     uint64
	// Sent is bytes from client to server, Received the answers; Packets
	// both ways.
	Sent, Received, Packets uint64
	// First is the earliest start, Last the latest time seen.
	First, Last time.Time
	// Classes counts records per compliance class when a policy was given.
	Classes Counts
	// WouldDrop and WouldAllow count records whose verdict the candidate
	// policy turns to drop/reject, or to allow.
	WouldDrop, WouldAllow uint64
}

// Records is the number of records counted.
func (t Traffic) Records() uint64 { return t.Connections + t.Drops }

// Edge is the traffic from one node (the clients) to another (the
// servers). From and To are equal for traffic inside a node.
type Edge struct {
	From, To string
	Traffic
	// Services are the protocols and ports used, busiest first.
	Services []Service
	// Users are the users behind the edge's connections (from directory
	// sessions), busiest first.
	Users []UserCount
	// Alerts counts the IDS alerts between the edge's ends (AddAlerts).
	Alerts uint64
}

// Service is a protocol and destination port (or ICMP type and code) with
// the records that used it.
type Service struct {
	Proto uint8
	// Port is the destination port; ICMPType and ICMPCode are set instead
	// for ICMP and ICMPv6.
	Port               uint16
	ICMPType, ICMPCode uint8
	// App is the AppID the agents' L7 readers saw on these connections
	// ("APP_HTTPS"); "" for connections they did not inspect, which are a
	// service of their own.
	App                string
	Connections, Drops uint64
}

// String is the port spec, followed by the app if any: "tcp/443 APP_HTTPS".
func (s Service) String() string {
	var p string
	switch {
	case isICMP(s.Proto):
		p = fmt.Sprintf("%s/%d/%d", ProtoName(s.Proto), s.ICMPType, s.ICMPCode)
	case s.Port == 0:
		p = ProtoName(s.Proto)
	default:
		p = fmt.Sprintf("%s/%d", ProtoName(s.Proto), s.Port)
	}
	if s.App != "" {
		p += " " + s.App
	}
	return p
}

var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}

// ProtoName names an IP protocol number the way port specs do.
func ProtoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprintf("proto%d", p)
}

func (e *fineEdge) traffic() Traffic {
	t := Traffic{
		Connections: e.conns, Drops: e.drops, DroppedPackets: e.droppedPackets,
		Sent: e.sent, Received: e.received, Packets: e.packets,
		Classes: countsOf(&e.classes), WouldDrop: e.wouldDrop, WouldAllow: e.wouldAllow,
	}
	if e.first != 0 {
		t.First = time.Unix(0, e.first).UTC()
	}
	if e.last != 0 {
		t.Last = time.Unix(0, e.last).UTC()
	}
	return t
}

// UserCount is one user's connections on an edge.
type UserCount struct {
	User        string
	Connections uint64
}

// Total is the traffic of every record added.
func (a *Analyzer) Total() Traffic { return a.total.traffic() }

// Map rolls the records up to a level. A scope keeps the edges with a
// workload end whose tags (with discovery's proposals) satisfy it; nil
// keeps every edge.
func (a *Analyzer) Map(level Level, scope tagexpr.Expr) *Map {
	places := a.place()
	type nodeAgg struct {
		node    Node
		t       fineEdge
		members map[int32]bool
	}
	nodes := map[string]*nodeAgg{}
	nodeOf := func(i int32, pl *Place) *nodeAgg {
		id := pl.ID(level)
		n := nodes[id]
		if n == nil {
			n = &nodeAgg{node: newNode(id, level, pl), members: map[int32]bool{}}
			nodes[id] = n
		}
		if !n.members[i] {
			n.members[i] = true
			if pl.Proposed {
				n.node.Proposed++
			}
		}
		return n
	}
	type edgeAgg struct {
		e        fineEdge
		services map[service]*serviceCount
	}
	edges := map[[2]string]*edgeAgg{}
	var total fineEdge
	for k, fe := range a.edges {
		sp, dp := a.endpointPlace(places, k.src), a.endpointPlace(places, k.dst)
		if scope != nil && !inScope(scope, &sp) && !inScope(scope, &dp) {
			continue
		}
		sn, dn := nodeOf(k.src, &sp), nodeOf(k.dst, &dp)
		sn.t.merge(fe)
		if dn != sn {
			dn.t.merge(fe)
		}
		total.merge(fe)
		ek := [2]string{sn.node.ID, dn.node.ID}
		ea := edges[ek]
		if ea == nil {
			ea = &edgeAgg{services: map[service]*serviceCount{}}
			edges[ek] = ea
		}
		ea.e.merge(fe)
		for _, s := range fe.services {
			sc := ea.services[s.svc]
			if sc == nil {
				sc = &serviceCount{svc: s.svc}
				ea.services[s.svc] = sc
			}
			sc.conns += s.conns
			sc.drops += s.drops
		}
	}
	m := &Map{Level: level, Total: total.traffic()}
	for _, n := range nodes {
		n.node.Members = len(n.members)
		n.node.Traffic = n.t.traffic()
		m.Nodes = append(m.Nodes, n.node)
	}
	slices.SortFunc(m.Nodes, func(x, y Node) int { return strings.Compare(x.ID, y.ID) })
	for k, ea := range edges {
		e := Edge{From: k[0], To: k[1], Traffic: ea.e.traffic()}
		for _, sc := range ea.services {
			e.Services = append(e.Services, serviceOut(sc))
		}
		for u, n := range ea.e.users {
			e.Users = append(e.Users, UserCount{User: u, Connections: n})
		}
		slices.SortFunc(e.Users, func(x, y UserCount) int {
			return cmp.Or(cmp.Compare(y.Connections, x.Connections), strings.Compare(x.User, y.User))
		})
		slices.SortFunc(e.Services, func(x, y Service) int {
			return cmp.Or(cmp.Compare(y.Connections+y.Drops, x.Connections+x.Drops),
				cmp.Compare(x.Proto, y.Proto), cmp.Compare(x.Port, y.Port),
				cmp.Compare(x.ICMPType, y.ICMPType), cmp.Compare(x.ICMPCode, y.ICMPCode), strings.Compare(x.App, y.App))
		})
		m.Edges = append(m.Edges, e)
	}
	slices.SortFunc(m.Edges, func(x, y Edge) int {
		return cmp.Or(cmp.Compare(y.Records(), x.Records()), strings.Compare(x.From, y.From), strings.Compare(x.To, y.To))
	})
	return m
}

func inScope(scope tagexpr.Expr, p *Place) bool { return !p.External() && scope.Eval(p.Tags) }

func newNode(id string, level Level, p *Place) Node {
	n := Node{ID: id, Level: level}
	if p.External() {
		n.External, n.Range = true, p.Range
		if level == LevelWorkload {
			n.Addr = p.Addr
		}
		return n
	}
	if level >= LevelEnv {
		n.Env = p.Env
	}
	if level >= LevelApp {
		n.App = orUntagged(p.App)
	}
	if level >= LevelTier {
		n.Tier = orUntagged(p.Tier)
	}
	if level >= LevelWorkload {
		n.Workload = p.Workload
	}
	return n
}

func serviceOut(sc *serviceCount) Service {
	s := Service{Proto: sc.svc.proto, App: sc.svc.app, Connections: sc.conns, Drops: sc.drops}
	if isICMP(sc.svc.proto) {
		s.ICMPType, s.ICMPCode = uint8(sc.svc.port>>8), uint8(sc.svc.port)
	} else {
		s.Port = sc.svc.port
	}
	return s
}

// WhatIf is the replay of the records against a candidate policy.
type WhatIf struct {
	Level Level
	// Total counts every record replayed; its WouldDrop and WouldAllow
	// are the records whose verdict changes.
	Total Traffic
	// Edges are the edges with a changed verdict, most changes first.
	Edges []Edge
	// Examples are distinct flows whose verdict changes, those the
	// candidate would drop first, then the busiest.
	Examples []Example
	// Changed is the number of distinct flows whose verdict changes.
	Changed int
}

// Example is one distinct flow (source, destination, protocol and port)
// whose verdict the candidate changes.
type Example struct {
	Src, Dst                 netip.Addr
	SrcWorkload, DstWorkload string
	// SrcNode and DstNode are the ends' nodes at the what-if's level.
	SrcNode, DstNode string
	Service          Service
	// Flows counts the records of the flow, Bytes their bytes both ways,
	// Last the latest seen.
	Flows, Bytes uint64
	Last         time.Time
	// Before is the current policy's decision, After the candidate's.
	Before, After Outcome
}

// WouldDrop reports whether the candidate blocks what the current policy
// allowed.
func (x *Example) WouldDrop() bool { return x.After.Blocks() }

// WhatIf reports how the candidate policy changes the verdicts of the
// records, per edge at a level and with up to limit examples (0: 20).
func (a *Analyzer) WhatIf(level Level, limit int) *WhatIf {
	if limit <= 0 {
		limit = 20
	}
	m := a.Map(level, nil)
	w := &WhatIf{Level: level, Total: m.Total, Changed: len(a.changes)}
	for _, e := range m.Edges {
		if e.WouldDrop+e.WouldAllow > 0 {
			w.Edges = append(w.Edges, e)
		}
	}
	slices.SortStableFunc(w.Edges, func(x, y Edge) int {
		return cmp.Or(cmp.Compare(y.WouldDrop, x.WouldDrop), cmp.Compare(y.WouldAllow, x.WouldAllow))
	})
	changes := make([]*change, 0, len(a.changes))
	for _, c := range a.changes {
		changes = append(changes, c)
	}
	slices.SortFunc(changes, func(x, y *change) int {
		xd, yd := blocks(x.d.cand.verdict), blocks(y.d.cand.verdict)
		if xd != yd {
			if xd {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(y.flows, x.flows), x.key.src.Compare(y.key.src), x.key.dst.Compare(y.key.dst),
			cmp.Compare(x.key.proto, y.key.proto), cmp.Compare(x.key.port, y.key.port),
			cmp.Compare(x.key.icmpType, y.key.icmpType), cmp.Compare(x.key.icmpCode, y.key.icmpCode))
	})
	places := a.place()
	for _, c := range changes[:min(limit, len(changes))] {
		sp, dp := a.endpointPlace(places, c.src), a.endpointPlace(places, c.dst)
		x := Example{
			Src: c.key.src, Dst: c.key.dst, SrcWorkload: sp.Workload, DstWorkload: dp.Workload,
			SrcNode: sp.ID(level), DstNode: dp.ID(level),
			Service: serviceOut(&serviceCount{svc: keyService(c.key)}),
			Flows:   c.flows, Bytes: c.bytes, Last: time.Unix(0, c.last).UTC(),
			Before: outcomeOut(a.opts.Eval, c.d.cur), After: outcomeOut(a.opts.Candidate, c.d.cand),
		}
		w.Examples = append(w.Examples, x)
	}
	return w
}

func keyService(k flowKey) service {
	if isICMP(k.proto) {
		return service{proto: k.proto, port: uint16(k.icmpType)<<8 | uint16(uint8(k.icmpCode)), app: k.app}
	}
	return service{proto: k.proto, port: k.port, app: k.app}
}

func outcomeOut(ev *eval.Evaluator, o outcome) Outcome {
	out := Outcome{Verdict: o.verdict, RuleID: o.rule}
	if info, ok := ev.Rule(o.rule); ok {
		out.Rule = info.Key
	}
	return out
}
