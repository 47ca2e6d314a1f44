package recommend

import (
	"fmt"
	"hash/maphash"
	"net/netip"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// Aggregator folds flow records one at a time into what a recommendation
// needs, so that a window of any size streams through it: records are
// merged by connection, then by pair of peers (application tiers, single
// untagged workloads, the outside) and port. Its memory grows with the
// peer pairs and ports seen, not with the records, except for one small
// entry per connection when records of a connection may repeat (see
// Options.OneRecordPerConnection).
//
// An Aggregator is not safe for concurrent use.
type Aggregator struct {
	r *recommender

	// seen remembers each connection's contribution so that its updates
	// and end count once: a 64-bit hash of its ID indexes refs, which
	// holds a second hash to tell the rare colliding IDs apart; those go to
	// collided under both hashes. Small map slots keep the lookups, which
	// miss the cache on a big window, cheap.
	seen         map[uint64]int32
	refs         []connRef
	collided     map[[2]uint64]int32
	seed1, seed2 maphash.Seed

	// Connections whose ports do not say which end listens wait, folded by
	// their exact tuple, until every connection has voted on which
	// endpoints recur (see orient).
	amb    map[ambKey]*ambConn
	counts map[endpoint]uint32

	// excluded sources (scanners) contribute nothing.
	excluded map[netip.Addr]bool

	stats Stats
}

// Stats counts what an Aggregator was fed.
type Stats struct {
	Records     uint64 // every record passed to Add
	Connections uint64 // distinct allowed connections in scope
	Ignored     uint64 // drops, rejects and records with no end in scope
	Excluded    uint64 // records of excluded sources (see ExcludeSources)
	// Refused counts TCP connections that were refused or never answered:
	// nothing listened, so they justify no rule.
	Refused uint64
}

// ExcludeSources leaves every later record whose source is one of addrs out
// of the draft: the scanners a ScanDetector found, typically.
func (a *Aggregator) ExcludeSources(addrs ...netip.Addr) {
	if a.excluded == nil {
		a.excluded = map[netip.Addr]bool{}
	}
	for _, x := range addrs {
		a.excluded[x] = true
	}
}

type connRef struct {
	ev    *Evidence
	bytes uint64
	hash2 uint64
}

// lookup returns the index in refs of the connection whose ID hashes to
// h, or -1.
func (a *Aggregator) lookup(h [2]uint64) int32 {
	i, ok := a.seen[h[0]]
	if !ok {
		return -1
	}
	if a.refs[i].hash2 == h[1] {
		return i
	}
	if j, ok := a.collided[h]; ok {
		return j
	}
	return -1
}

// remember records a new connection whose ID hashes to h.
func (a *Aggregator) remember(h [2]uint64, ev *Evidence, bytes uint64) {
	i := int32(len(a.refs))
	a.refs = append(a.refs, connRef{ev: ev, bytes: bytes, hash2: h[1]})
	if _, taken := a.seen[h[0]]; !taken {
		a.seen[h[0]] = i
		return
	}
	if a.collided == nil {
		a.collided = map[[2]uint64]int32{}
	}
	a.collided[h] = i
}

type ambKey struct {
	src, dst         netip.Addr
	proto            uint8
	srcPort, dstPort uint16
}

type ambConn struct {
	src, dst int32 // inventory indexes, or -1
	app      uint16
	x        Example
	ev       Evidence // without examples: x is the one example
}

// NewAggregator prepares the folding of records for a recommendation of
// scope (a tag expression) over the given inventory.
func NewAggregator(inventory []*policy.Workload, scope string, opt Options) (*Aggregator, error) {
	opt = opt.Defaults()
	expr, err := tagexpr.Parse(scope)
	if err != nil {
		return nil, fmt.Errorf("recommend: scope %q: %w", scope, err)
	}
	r := &recommender{opt: opt, inventory: inventory, scope: expr,
		byAddr: addrIndex{v4: map[uint32]int32{}, v6: map[[16]byte]int32{}}, edges: map[peerKey]*edge{}}
	r.classify()
	a := &Aggregator{r: r, amb: map[ambKey]*ambConn{}, counts: map[endpoint]uint32{}}
	if !opt.OneRecordPerConnection {
		a.seen = map[uint64]int32{}
		a.seed1, a.seed2 = maphash.MakeSeed(), maphash.MakeSeed()
	}
	return a, nil
}

// Workload names the inventory workload holding addr, "" for none.
func (a *Aggregator) Workload(addr netip.Addr) string {
	if i := a.r.workloadOf(addr); i >= 0 {
		return a.r.inventory[i].Metadata.Name
	}
	return ""
}

// Stats returns the counts so far.
func (a *Aggregator) Stats() Stats { return a.stats }

// Add folds one record in. rec is not kept: a caller may reuse it.
func (a *Aggregator) Add(rec *flow.Record) {
	a.stats.Records++
	r := a.r
	if !allowed(rec) {
		a.stats.Ignored++
		return
	}
	if a.excluded != nil && a.excluded[rec.Src] {
		a.stats.Excluded++
		return
	}
	if rec.Proto == 6 && rec.Unanswered() {
		a.stats.Refused++
		return
	}
	// Out of scope is decided first: it is two integer map lookups, and a
	// small scope then costs little.
	x := tuple(rec)
	si, di := r.workloadOf(x.Src), r.workloadOf(x.Dst)
	if !(si >= 0 && r.inScope[si] || di >= 0 && r.inScope[di]) {
		a.stats.Ignored++
		return
	}
	bytes := rec.SrcBytes + rec.DstBytes
	last := rec.Seen
	if rec.End.After(last) {
		last = rec.End
	}
	var h [2]uint64
	dedup := a.seen != nil && rec.ID != ""
	if dedup {
		h = [2]uint64{maphash.String(a.seed1, rec.ID), maphash.String(a.seed2, rec.ID)}
		if i := a.lookup(h); i >= 0 {
			// Records carry totals: the largest is the connection's.
			ref := &a.refs[i]
			if bytes > ref.bytes {
				ref.ev.Bytes += bytes - ref.bytes
				ref.bytes = bytes
			}
			if last.After(ref.ev.LastSeen) {
				ref.ev.LastSeen = last
			}
			return
		}
	}
	a.stats.Connections++
	var ev *Evidence
	app := r.appOf(rec.App)
	if r.ambiguous(x) {
		k := ambKey{x.Src, x.Dst, x.Proto, x.SrcPort, x.DstPort}
		c := a.amb[k]
		if c == nil {
			c = &ambConn{src: int32(si), dst: int32(di), app: app, x: x}
			a.amb[k] = c
		}
		a.counts[endpoint{x.Src, x.Proto, x.SrcPort}]++
		a.counts[endpoint{x.Dst, x.Proto, x.DstPort}]++
		c.ev.count(bytes, rec.Start, last)
		ev = &c.ev
	} else {
		x, swapped := r.orient(x, nil)
		if swapped {
			si, di = di, si
		}
		e := r.edgeOf(si, di, app, x)
		e.ev.add(x, bytes, rec.Start, last)
		ev = &e.ev
	}
	if dedup {
		a.remember(h, ev, bytes)
	}
}

func (r *recommender) edgeOf(si, di int, app uint16, x Example) *edge {
	k := peerKey{external, external, app}
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
	e.ports.add(portKey{proto: x.Proto, port: x.DstPort})
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
	return e
}

// finish orients the connections whose ports were ambiguous and folds
// them into their edges. It runs once, before the draft.
func (a *Aggregator) finish() {
	r := a.r
	for _, c := range a.amb {
		x, swapped := r.orient(c.x, a.counts)
		si, di := int(c.src), int(c.dst)
		if swapped {
			si, di = di, si
		}
		e := r.edgeOf(si, di, c.app, x)
		e.ev.merge(&c.ev)
		e.ev.addExample(x)
	}
	a.amb = map[ambKey]*ambConn{}
	a.counts = map[endpoint]uint32{}
	r.foldIdentified()
}

// foldIdentified puts a pair's identified connections on ports where it
// also had unidentified ones into the port rule: a rule without a profile
// allows them whatever their app, so a profile rule for them would never
// decide anything. The L7 readers identify only connections an L7 rule
// concerns, so both kinds on one port is usual while such rules change.
func (r *recommender) foldIdentified() {
	for k, e := range r.edges {
		if k.app == 0 {
			continue
		}
		plain := r.edges[peerKey{k.src, k.dst, 0}]
		if plain == nil {
			continue
		}
		covered := plain.ports.all()
		var rest portSet
		for pk := range e.ports.all() {
			if _, ok := covered[pk]; !ok {
				rest.add(pk)
			}
		}
		if len(rest.few)+len(rest.many) > 0 {
			e.ports = rest
			continue
		}
		plain.ev.merge(&e.ev)
		for x := range e.ext {
			if plain.ext == nil {
				plain.ext = map[netip.Addr]struct{}{}
			}
			plain.ext[x] = struct{}{}
		}
		delete(r.edges, k)
	}
}

// Draft builds the recommendation from what was added. existing is the
// current policy (nil for none): its groups and services are reused, and
// when it holds a policy of the draft's name, the draft is incremental
// (see Changes). Draft may be called once.
func (a *Aggregator) Draft(existing *policy.Set) (*Draft, error) {
	a.finish()
	a.r.existing = existing
	return a.r.draft()
}
