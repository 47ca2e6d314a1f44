// Package recommend turns observed traffic into a draft zero-trust policy:
// groups per application tier, services from the ports servers listen on,
// one allow rule per observed pair of peers and a drop rule closing the
// scope, each rule with the flows that justify it.
package recommend

import (
	"cmp"
	"encoding/binary"
	"fmt"
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
	// OneRecordPerConnection says the records come merged, one per
	// connection (the flow store merges a connection's updates and end),
	// so the Aggregator need not remember connection IDs.
	OneRecordPerConnection bool
	// Mode is the mode of the rules the draft adds: enforce (the default)
	// or staged, to watch what they would do before enforcing them.
	Mode policy.Mode
	// Prune removes, from an existing policy of the draft's name, the
	// allow rules no flow of the window used; without it they are only
	// reported as stale.
	Prune bool
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

// compare orders examples; it runs for every connection, so it returns
// at the first difference instead of comparing every field.
func (e Example) compare(f Example) int {
	if c := cmp.Compare(e.Proto, f.Proto); c != 0 {
		return c
	}
	if c := e.Src.Compare(f.Src); c != 0 {
		return c
	}
	if c := e.Dst.Compare(f.Dst); c != 0 {
		return c
	}
	if c := cmp.Compare(e.DstPort, f.DstPort); c != 0 {
		return c
	}
	return cmp.Compare(e.SrcPort, f.SrcPort)
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
	e.count(bytes, first, last)
	e.addExample(x)
}

// count adds one connection without an example.
func (e *Evidence) count(bytes uint64, first, last time.Time) {
	e.Flows++
	e.Bytes += bytes
	if !first.IsZero() && (e.FirstSeen.IsZero() || first.Before(e.FirstSeen)) {
		e.FirstSeen = first
	}
	if last.After(e.LastSeen) {
		e.LastSeen = last
	}
}

// addExample keeps x if it is among the smallest maxExamples.
func (e *Evidence) addExample(x Example) {
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
		e.addExample(x)
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
	// Profiles are the ContextProfiles of the applications seen (one app
	// each), for rules of connections an L7 reader identified.
	Profiles []*policy.ContextProfile
	// Reused names the existing groups and services the policy refers to.
	Reused []string
	Policy *policy.Policy
	// Evidence is keyed by rule name; the closing drop rule has none, nor
	// has a stale rule.
	Evidence map[string]*Evidence
	// Changes relates the draft to the existing policy of its name.
	Changes Changes
}

// Objects returns the draft's new objects in apply order: groups,
// services, profiles, then the policy.
func (d *Draft) Objects() []policy.Object {
	var out []policy.Object
	for _, g := range d.Groups {
		out = append(out, g)
	}
	for _, s := range d.Services {
		out = append(out, s)
	}
	for _, p := range d.Profiles {
		out = append(out, p)
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

// peerKey is an edge: a pair of peers and the application their
// connections were identified as.
type peerKey struct {
	src, dst int32 // class indexes; external = -1
	// app indexes recommender.apps: 0 for connections no L7 reader
	// inspected, else the AppID it saw. Connections of one app become a
	// rule of their own whose ContextProfile names the app, so that the
	// data plane checks the application, not only the port.
	app uint16
}

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

// Recommend builds a draft for in.Scope from what in.Flows show. It is
// an Aggregator fed every record of in.Flows.
func Recommend(in Input, opt Options) (*Draft, error) {
	a, err := NewAggregator(in.Inventory, in.Scope, opt)
	if err != nil {
		return nil, err
	}
	for i := range in.Flows {
		a.Add(&in.Flows[i])
	}
	return a.Draft(in.Existing)
}

type recommender struct {
	opt       Options
	inventory []*policy.Workload
	existing  *policy.Set
	scope     tagexpr.Expr
	classes   []*class
	wlClass   []int32 // inventory index -> class
	inScope   []bool  // inventory index -> matches scope
	byAddr    addrIndex
	edges     map[peerKey]*edge
	names     map[string]bool // names taken by objects the draft creates
	// apps are the AppIDs seen, apps[0] = "" (not identified).
	apps   []string
	appIdx map[string]uint16
}

// appOf is the index of AppID name in r.apps, adding it.
func (r *recommender) appOf(name string) uint16 {
	if name == "" {
		return 0
	}
	if i, ok := r.appIdx[name]; ok {
		return i
	}
	if r.appIdx == nil {
		r.apps, r.appIdx = []string{""}, map[string]uint16{}
	}
	if len(r.apps) > 1<<16-1 {
		return 0 // cannot happen with dpi's AppIDs; stay a port rule
	}
	i := uint16(len(r.apps))
	r.apps = append(r.apps, name)
	r.appIdx[name] = i
	return i
}

func (r *recommender) classify() {
	byKey := map[[2]string]int32{}
	r.wlClass = make([]int32, len(r.inventory))
	r.inScope = make([]bool, len(r.inventory))
	for i, w := range r.inventory {
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

func allowed(rec *flow.Record) bool {
	return rec.Kind != flow.KindDrop && rec.Verdict != flow.Drop && rec.Verdict != flow.Reject
}

type endpoint struct {
	addr  netip.Addr
	proto uint8
	port  uint16
}

// tuple is a record's connection as recorded, source first; an ICMP
// record's type stands in the destination port.
func tuple(rec *flow.Record) Example {
	x := Example{Proto: rec.Proto, Src: rec.Src.Unmap(), Dst: rec.Dst.Unmap(), SrcPort: rec.SrcPort, DstPort: rec.DstPort}
	if !ports.HasPorts(rec.Proto) {
		x.SrcPort, x.DstPort = 0, 0
		if ports.IsICMP(rec.Proto) {
			x.DstPort = uint16(rec.ICMPType)
		}
	}
	return x
}

// orient returns the connection client first, and whether that swapped
// its ends. The listener is the end whose port is below the ephemeral
// range when only one is; otherwise the end whose (address, port) recurs
// over more connections; otherwise the record's destination.
func (r *recommender) orient(x Example, counts map[endpoint]uint32) (Example, bool) {
	if !r.ambiguous(x) {
		if !ports.HasPorts(x.Proto) || x.SrcPort >= r.opt.EphemeralPort || x.SrcPort == 0 {
			return x, false
		}
		return x.swapped(), true
	}
	s := counts[endpoint{x.Src, x.Proto, x.SrcPort}]
	d := counts[endpoint{x.Dst, x.Proto, x.DstPort}]
	if s > d {
		return x.swapped(), true
	}
	return x, false
}

func (x Example) swapped() Example {
	x.Src, x.Dst, x.SrcPort, x.DstPort = x.Dst, x.Src, x.DstPort, x.SrcPort
	return x
}

// ambiguous reports whether the ports alone do not say which end listens:
// both look ephemeral, or neither does.
func (r *recommender) ambiguous(x Example) bool {
	if !ports.HasPorts(x.Proto) {
		return false
	}
	return (x.SrcPort >= r.opt.EphemeralPort || x.SrcPort == 0) == (x.DstPort >= r.opt.EphemeralPort)
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
