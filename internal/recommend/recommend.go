// Package recommend turns observed traffic into a draft zero-trust policy:
// groups per application tier, services from the ports servers listen on,
// one allow rule per observed pair of peers and a drop rule closing the
// scope, each rule with the flows that justify it.
package recommend

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// Options tune the recommender. The zero value is usable: Defaults fills it.
type Options struct {
	// EphemeralPort is the first port of the client (ephemeral) range; a
	// port at or above it is taken for a client's unless the other end's
	// port is ephemeral too. Default 32768 (Linux).
	EphemeralPort uint16
	// RangeGap is the largest difference between two neighbouring observed
	// ports of one peer pair that still puts them in one range. Default 2.
	RangeGap uint16
	// RangeMinPorts is how many observed ports a run needs before it is
	// written as a range rather than port by port. Default 3.
	RangeMinPorts int
	// MaxExternalAddrs is how many distinct outside addresses one tier may
	// talk to (per direction) before the rule says "any" instead of listing
	// them. Default 16.
	MaxExternalAddrs int
	// Name is the name of the Policy section; default "recommended-" and
	// the scope.
	Name string
}

// Defaults returns o with every unset field at its default.
func (o Options) Defaults() Options {
	if o.EphemeralPort == 0 {
		o.EphemeralPort = 32768
	}
	if o.RangeGap == 0 {
		o.RangeGap = 2
	}
	if o.RangeMinPorts == 0 {
		o.RangeMinPorts = 3
	}
	if o.MaxExternalAddrs == 0 {
		o.MaxExternalAddrs = 16
	}
	return o
}

// Input is everything one recommendation looks at.
type Input struct {
	// Inventory is every workload known; an address of none of them is
	// outside.
	Inventory []*policy.Workload
	// Existing is the current policy; its groups are reused when their
	// membership is that of a recommended group. May be nil.
	Existing *policy.Set
	// Flows are flow records; drops and rejects are ignored, and the
	// records of one connection (same ID) count once.
	Flows []flow.Record
	// Scope is a tag expression selecting the workloads the draft
	// protects, e.g. app == "shop".
	Scope string
}

// Example is one observed connection, client to server.
type Example struct {
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

func (e Example) String() string {
	return fmt.Sprintf("%s %s -> %s", ports.ProtoName(e.Proto),
		netip.AddrPortFrom(e.Src, e.SrcPort), netip.AddrPortFrom(e.Dst, e.DstPort))
}

func (e Example) compare(f Example) int {
	return cmp.Or(cmp.Compare(e.Proto, f.Proto), e.Src.Compare(f.Src), e.Dst.Compare(f.Dst),
		cmp.Compare(e.DstPort, f.DstPort), cmp.Compare(e.SrcPort, f.SrcPort))
}

// Evidence is why a rule is there: the connections it covers.
type Evidence struct {
	Flows     uint64
	Bytes     uint64
	FirstSeen time.Time
	LastSeen  time.Time
	// Examples are up to three connections, smallest first.
	Examples []Example
}

const maxExamples = 3

func (e *Evidence) add(x Example, bytes uint64, first, last time.Time) {
	e.Flows++
	e.Bytes += bytes
	if !first.IsZero() && (e.FirstSeen.IsZero() || first.Before(e.FirstSeen)) {
		e.FirstSeen = first
	}
	if last.After(e.LastSeen) {
		e.LastSeen = last
	}
	if len(e.Examples) == maxExamples && x.compare(e.Examples[maxExamples-1]) >= 0 {
		return
	}
	i, found := slices.BinarySearchFunc(e.Examples, x, Example.compare)
	if found || i >= maxExamples {
		return
	}
	e.Examples = slices.Insert(e.Examples, i, x)
	if len(e.Examples) > maxExamples {
		e.Examples = e.Examples[:maxExamples]
	}
}

func (e *Evidence) merge(o *Evidence) {
	e.Flows += o.Flows
	e.Bytes += o.Bytes
	if !o.FirstSeen.IsZero() && (e.FirstSeen.IsZero() || o.FirstSeen.Before(e.FirstSeen)) {
		e.FirstSeen = o.FirstSeen
	}
	if o.LastSeen.After(e.LastSeen) {
		e.LastSeen = o.LastSeen
	}
	for _, x := range o.Examples {
		e.add(x, 0, time.Time{}, time.Time{})
		e.Flows--
	}
}

// Summary is the one-line form written into a rule's description.
func (e *Evidence) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "observed %d flows, %d bytes", e.Flows, e.Bytes)
	if !e.FirstSeen.IsZero() {
		fmt.Fprintf(&b, ", %s to %s", e.FirstSeen.UTC().Format(time.RFC3339), e.LastSeen.UTC().Format(time.RFC3339))
	}
	if len(e.Examples) > 0 {
		fmt.Fprintf(&b, "; e.g. %s", e.Examples[0])
	}
	return b.String()
}

// Draft is a recommended policy, not yet applied.
type Draft struct {
	// Groups and Services are the new objects the policy needs, by name.
	Groups   []*policy.Group
	Services []*policy.Service
	// Reused names the existing groups and services the policy refers to.
	Reused []string
	Policy *policy.Policy
	// Evidence is keyed by rule name; the closing drop rule has none.
	Evidence map[string]*Evidence
}

// Objects returns the draft's new objects in apply order: groups,
// services, then the policy.
func (d *Draft) Objects() []policy.Object {
	var out []policy.Object
	for _, g := range d.Groups {
		out = append(out, g)
	}
	for _, s := range d.Services {
		out = append(out, s)
	}
	return append(out, d.Policy)
}

// class is a set of workloads one group stands for: an (app, tier) pair,
// or a single workload with neither tag.
type class struct {
	app, tier string
	workload  string // set only for an untagged workload
	members   []int  // inventory indexes, ascending
	inScope   bool   // some member is in scope
	group     string // group name, or "" for address literals
	addrs     []string
}

type peerKey struct{ src, dst int32 } // class indexes; external = -1

type portKey struct {
	proto uint8
	port  uint16 // ICMP: type
}

type edge struct {
	ports portSet
	ext   map[netip.Addr]struct{}
	ev    Evidence
}

const external = -1

// Recommend builds a draft for in.Scope from what in.Flows show.
func Recommend(in Input, opt Options) (*Draft, error) {
	opt = opt.Defaults()
	scope, err := tagexpr.Parse(in.Scope)
	if err != nil {
		return nil, fmt.Errorf("recommend: scope %q: %w", in.Scope, err)
	}
	r := &recommender{opt: opt, in: in, scope: scope, byAddr: addrIndex{v4: map[uint32]int32{}, v6: map[[16]byte]int32{}}}
	r.classify()
	conns := r.dedup()
	r.aggregate(conns)
	return r.draft()
}

type recommender struct {
	opt     Options
	in      Input
	scope   tagexpr.Expr
	classes []*class
	wlClass []int32 // inventory index -> class
	inScope []bool  // inventory index -> matches scope
	byAddr  addrIndex
	edges   map[peerKey]*edge
	names   map[string]bool // names taken by objects the draft creates
}

func (r *recommender) classify() {
	byKey := map[[2]string]int32{}
	r.wlClass = make([]int32, len(r.in.Inventory))
	r.inScope = make([]bool, len(r.in.Inventory))
	for i, w := range r.in.Inventory {
		tags := w.Spec.Tags
		app, tier := tags["app"], tags["tier"]
		var ci int32
		if app == "" && tier == "" {
			ci = int32(len(r.classes))
			r.classes = append(r.classes, &class{workload: w.Metadata.Name})
		} else {
			k := [2]string{app, tier}
			c, ok := byKey[k]
			if !ok {
				c = int32(len(r.classes))
				byKey[k] = c
				r.classes = append(r.classes, &class{app: app, tier: tier})
			}
			ci = c
		}
		c := r.classes[ci]
		c.members = append(c.members, i)
		r.wlClass[i] = ci
		r.inScope[i] = r.scope.Eval(tags)
		c.inScope = c.inScope || r.inScope[i]
		for _, s := range w.Spec.IPs {
			if a, err := netip.ParseAddr(s); err == nil {
				r.byAddr.put(a, int32(i))
			} else if p, err := netip.ParsePrefix(s); err == nil && p.IsSingleIP() {
				r.byAddr.put(p.Addr(), int32(i))
			}
		}
	}
}

// conn is one connection after its records are merged.
type conn struct {
	rec         *flow.Record
	src, dst    int32 // inventory indexes of the record's ends, or -1
	bytes       uint64
	first, last time.Time
}

func allowed(rec *flow.Record) bool {
	return rec.Kind != flow.KindDrop && rec.Verdict != flow.Drop && rec.Verdict != flow.Reject
}

// dedup merges the records of each connection, keeping the largest
// counters, as the flow store does.
func (r *recommender) dedup() []conn {
	conns := make([]conn, 0, len(r.in.Flows))
	// IDs are keyed by their hash, checked against the stored ID on a hit;
	// the rare IDs whose hash collides with another's go to byString.
	seed := maphash.MakeSeed()
	byHash := make(map[uint64]int32, len(r.in.Flows))
	var byString map[string]int32
	for i := range r.in.Flows {
		rec := &r.in.Flows[i]
		if !allowed(rec) {
			continue
		}
		// Out of scope is decided before the ID lookup, which is the
		// expensive part, so a small scope costs little.
		si, di := r.workloadOf(rec.Src.Unmap()), r.workloadOf(rec.Dst.Unmap())
		if !(si >= 0 && r.inScope[si] || di >= 0 && r.inScope[di]) {
			continue
		}
		bytes := rec.SrcBytes + rec.DstBytes
		last := rec.Seen
		if rec.End.After(last) {
			last = rec.End
		}
		if rec.ID != "" {
			h := maphash.String(seed, rec.ID)
			j, ok := byHash[h]
			if ok && conns[j].rec.ID != rec.ID {
				j, ok = byString[rec.ID]
				if !ok {
					if byString == nil {
						byString = map[string]int32{}
					}
					byString[rec.ID] = int32(len(conns))
				}
			} else if !ok {
				byHash[h] = int32(len(conns))
			}
			if ok {
				c := &conns[j]
				c.bytes = max(c.bytes, bytes)
				if last.After(c.last) {
					c.last = last
				}
				continue
			}
		}
		conns = append(conns, conn{rec: rec, src: int32(si), dst: int32(di), bytes: bytes, first: rec.Start, last: last})
	}
	return conns
}

type endpoint struct {
	addr  netip.Addr
	proto uint8
	port  uint16
}

// orient returns the connection client first. The listener is the end
// whose port is below the ephemeral range when only one is; otherwise the
// end whose (address, port) recurs over more connections; otherwise the
// record's destination.
func (r *recommender) orient(rec *flow.Record, counts map[endpoint]uint32) Example {
	x := Example{Proto: rec.Proto, Src: rec.Src.Unmap(), Dst: rec.Dst.Unmap(), SrcPort: rec.SrcPort, DstPort: rec.DstPort}
	if !ports.HasPorts(rec.Proto) {
		if ports.IsICMP(rec.Proto) {
			x.SrcPort, x.DstPort = 0, uint16(rec.ICMPType)
		}
		return x
	}
	srcEph, dstEph := rec.SrcPort >= r.opt.EphemeralPort || rec.SrcPort == 0, rec.DstPort >= r.opt.EphemeralPort
	swap := false
	switch {
	case srcEph && !dstEph:
	case dstEph && !srcEph:
		swap = true
	default:
		s := counts[endpoint{x.Src, x.Proto, x.SrcPort}]
		d := counts[endpoint{x.Dst, x.Proto, x.DstPort}]
		swap = s > d
	}
	if swap {
		x.Src, x.Dst, x.SrcPort, x.DstPort = x.Dst, x.Src, x.DstPort, x.SrcPort
	}
	return x
}

func (r *recommender) ambiguous(rec *flow.Record) bool {
	if !ports.HasPorts(rec.Proto) {
		return false
	}
	return (rec.SrcPort >= r.opt.EphemeralPort || rec.SrcPort == 0) == (rec.DstPort >= r.opt.EphemeralPort)
}

func (r *recommender) aggregate(conns []conn) {
	counts := map[endpoint]uint32{}
	for _, c := range conns {
		if r.ambiguous(c.rec) {
			counts[endpoint{c.rec.Src.Unmap(), c.rec.Proto, c.rec.SrcPort}]++
			counts[endpoint{c.rec.Dst.Unmap(), c.rec.Proto, c.rec.DstPort}]++
		}
	}
	r.edges = map[peerKey]*edge{}
	for _, c := range conns {
		x := r.orient(c.rec, counts)
		si, di := c.src, c.dst
		if x.Src != c.rec.Src.Unmap() {
			si, di = di, si
		}
		k := peerKey{external, external}
		if si >= 0 {
			k.src = r.wlClass[si]
		}
		if di >= 0 {
			k.dst = r.wlClass[di]
		}
		e := r.edges[k]
		if e == nil {
			e = &edge{}
			r.edges[k] = e
		}
		e.ports.add(portKey{x.Proto, x.DstPort})
		if k.src == external || k.dst == external {
			if e.ext == nil {
				e.ext = map[netip.Addr]struct{}{}
			}
			if k.src == external {
				e.ext[x.Src] = struct{}{}
			} else {
				e.ext[x.Dst] = struct{}{}
			}
		}
		e.ev.add(x, c.bytes, c.first, c.last)
	}
}

func (r *recommender) workloadOf(a netip.Addr) int {
	if i, ok := r.byAddr.get(a); ok {
		return int(i)
	}
	return -1
}

// addrIndex maps workload addresses to inventory indexes; keys are plain
// integers because hashing a netip.Addr costs more than the rest of a
// record's work.
type addrIndex struct {
	v4 map[uint32]int32
	v6 map[[16]byte]int32
}

func (x *addrIndex) put(a netip.Addr, i int32) {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		x.v4[binary.BigEndian.Uint32(b[:])] = i
	} else {
		x.v6[a.As16()] = i
	}
}

func (x *addrIndex) get(a netip.Addr) (int32, bool) {
	if a.Is4() {
		b := a.As4()
		i, ok := x.v4[binary.BigEndian.Uint32(b[:])]
		return i, ok
	}
	i, ok := x.v6[a.As16()]
	return i, ok
}

// portSet is the ports seen between two peers: usually a handful, so a
// slice, turning into a map when it grows.
type portSet struct {
	few  []portKey
	many map[portKey]struct{}
}

func (s *portSet) add(k portKey) {
	if s.many != nil {
		s.many[k] = struct{}{}
		return
	}
	if slices.Contains(s.few, k) {
		return
	}
	if len(s.few) < 16 {
		s.few = append(s.few, k)
		return
	}
	s.many = make(map[portKey]struct{}, 32)
	for _, x := range s.few {
		s.many[x] = struct{}{}
	}
	s.many[k] = struct{}{}
	s.few = nil
}

func (s *portSet) all() map[portKey]struct{} {
	if s.many != nil {
		return s.many
	}
	m := make(map[portKey]struct{}, len(s.few))
	for _, x := range s.few {
		m[x] = struct{}{}
	}
	return m
}
