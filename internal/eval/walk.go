package eval

import (
	"math/bits"
	"strings"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// point is the walk's state at one enforcement point.
type point struct {
	wl         int32
	dir        uint8
	enf, stage int32 // rule index of the decision, -1 until found
}

// decide fills pts and the verdict fields of d, and returns the number of
// points.
func (e *Evaluator) decide(f *Flow, pts *[2]Point, d *Decision) int {
	w, ok := e.start(f)
	if !ok {
		d.Verdict, d.StagedVerdict = policy.ActionAllow, policy.ActionAllow
		return 0
	}
	// Rules that name groups on both sides are reached through the side
	// whose groups they name less often; the other side is checked per
	// candidate.
	srcCost := int(e.src.bothRefs[w.srcID]) + refs(e.src.both, w.srcCtx)
	dstCost := int(e.dst.bothRefs[w.dstID]) + refs(e.dst.both, w.dstCtx)
	w.run(e, srcCost <= dstCost)
	return e.finish(&w, pts, d)
}

// start resolves the flow's endpoints and points; false when there is no
// point. It returns the walk by value so that nothing it points to has to
// live on the heap.
func (e *Evaluator) start(f *Flow) (walk, bool) {
	w := walk{e: e, f: f}
	var srcWL, dstWL int32
	w.srcID, srcWL = e.lookup(f.Src)
	w.dstID, dstWL = e.lookup(f.Dst)
	if srcWL < 0 && dstWL < 0 {
		return w, false
	}
	if srcWL >= 0 {
		w.ps[w.np] = point{wl: srcWL, dir: dirOut, enf: -1, stage: -1}
		w.np++
	}
	if dstWL >= 0 {
		w.ps[w.np] = point{wl: dstWL, dir: dirIn, enf: -1, stage: -1}
		w.np++
	}
	w.pending = w.np
	w.fqdn = normalizeFQDN(f.FQDN)
	w.srcGs, w.dstGs = e.groupsOf(w.srcID), e.groupsOf(w.dstID)
	if f.User != "" {
		gs, ok := e.users[f.User]
		if !ok {
			// Names are indexed in lower case; ToLower allocates only
			// for a name that has upper case.
			gs = e.users[strings.ToLower(f.User)]
		}
		w.srcCtx = gs
	}
	w.dstCtx = e.fqdns.groups(w.fqdn)
	return w, true
}

// finish turns the walk's decisions into points and the flow's verdict.
func (e *Evaluator) finish(w *walk, pts *[2]Point, d *Decision) int {
	for i := 0; i < w.np; i++ {
		p := &w.ps[i]
		enf, stg := e.infoAt(p.enf), e.infoAt(p.stage)
		dir := policy.DirectionOut
		if p.dir == dirIn {
			dir = policy.DirectionIn
		}
		pts[i] = Point{
			Workload:     e.workloads[p.wl],
			Direction:    dir,
			Action:       enf.Action,
			RuleID:       enf.ID,
			Rule:         enf.Key,
			StagedAction: stg.Action,
			StagedRuleID: stg.ID,
			StagedRule:   stg.Key,
		}
	}
	d.Enforced = true
	d.Verdict, d.RuleID, d.Rule = combine(pts[:w.np], false)
	d.StagedVerdict, d.StagedRuleID, d.StagedRule = combine(pts[:w.np], true)
	return w.np
}

func (e *Evaluator) infoAt(i int32) *RuleInfo {
	if i < 0 {
		return &e.dflt
	}
	return &e.info[i]
}

func refs(idx [][]entry, gs []int32) int {
	n := 0
	for _, g := range gs {
		n += len(idx[g])
	}
	return n
}

// combine folds the points' decisions into the flow's: the first point that
// drops or rejects decides, else the last point (ingress if there is one).
func combine(pts []Point, staged bool) (policy.Action, uint32, string) {
	for i := range pts {
		p := &pts[i]
		a, id, key := p.Action, p.RuleID, p.Rule
		if staged {
			a, id, key = p.StagedAction, p.StagedRuleID, p.StagedRule
		}
		if a != policy.ActionAllow {
			return a, id, key
		}
	}
	p := &pts[len(pts)-1]
	if staged {
		return p.StagedAction, p.StagedRuleID, p.StagedRule
	}
	return p.Action, p.RuleID, p.Rule
}

// walk visits, in rule order, the rules that name one side of the flow
// (or any), and settles each point at its first enforced match.
type walk struct {
	e              *Evaluator
	f              *Flow
	fqdn           string
	srcID, dstID   uint32
	srcGs, dstGs   []int32 // identity groups
	srcCtx, dstCtx []int32 // groups joined by user or name
	ps             [2]point
	np             int
	pending        int // points without an enforced decision
}

// An endpoint's candidate lists are merged in rule order one of two ways.
// A heap of the lists stops as soon as the points are decided but pays
// log(lists) per candidate; a bitmap over rule indexes pays per candidate
// and per 64 rules of the span it covers, and wins once there are more
// than a few lists. heapMaxGroups is the most groups (of both endpoints)
// merged with a heap; tests move it to run both paths. heapCap bounds the
// lists the heap holds: every group adds at most two.
const heapCap = 1 + 2*16

var heapMaxGroups = 4

// run visits the flow's candidates in rule order until every point is
// decided. bySrc says through which side rules naming groups on both sides
// are reached.
//
// e is w.e, passed apart: escape analysis would otherwise let the pool
// call leak everything the walk points to, the flow included.
func (w *walk) run(e *Evaluator, bySrc bool) {
	bit := portBit(w.f.Proto, w.f.Port)
	walked, walkedCtx, walkedIdx := w.srcGs, w.srcCtx, &e.src
	if !bySrc {
		walked, walkedCtx, walkedIdx = w.dstGs, w.dstCtx, &e.dst
	}
	groups := len(w.srcGs) + len(w.srcCtx) + len(w.dstGs) + len(w.dstCtx)
	if groups > heapMaxGroups || 1+2*groups > heapCap {
		w.runBitmap(e, bit, bySrc, walked, walkedCtx, walkedIdx)
		return
	}
	var buf [heapCap][]entry
	h := buf[:0]
	if len(e.anyAny) > 0 {
		h = append(h, e.anyAny)
	}
	h = appendLists(h, e.src.only, w.srcGs)
	h = appendLists(h, e.src.only, w.srcCtx)
	h = appendLists(h, e.dst.only, w.dstGs)
	h = appendLists(h, e.dst.only, w.dstCtx)
	h = appendLists(h, walkedIdx.both, walked)
	h = appendLists(h, walkedIdx.both, walkedCtx)
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
	last := int32(-1)
	for w.pending > 0 && len(h) > 0 {
		var x entry
		x, h = pop(h)
		if x.rule != last && x.ports&bit != 0 { // a rule may name two of the endpoint's groups
			last = x.rule
			w.visit(x.rule, bySrc)
		}
	}
}

// runBitmap marks the candidates whose ports can match in a bitmap over
// rule indexes and visits them in order; marking twice is the
// deduplication.
func (w *walk) runBitmap(e *Evaluator, bit uint32, bySrc bool, walked, walkedCtx []int32, walkedIdx *sideIndex) {
	p := e.scratch.Get().(*[]uint64)
	m := marker{words: *p, bit: bit, lo: len(*p), hi: -1}
	m.mark(e.anyAny)
	m.markGroups(e.src.only, w.srcGs)
	m.markGroups(e.src.only, w.srcCtx)
	m.markGroups(e.dst.only, w.dstGs)
	m.markGroups(e.dst.only, w.dstCtx)
	m.markGroups(walkedIdx.both, walked)
	m.markGroups(walkedIdx.both, walkedCtx)
	words := m.words
	for i := m.lo; i <= m.hi; i++ {
		word := words[i]
		if word == 0 {
			continue
		}
		words[i] = 0
		for ; word != 0 && w.pending > 0; word &= word - 1 {
			w.visit(int32(i<<6|bits.TrailingZeros64(word)), bySrc)
		}
		if w.pending == 0 {
			clear(words[i+1 : m.hi+1]) // hand the scratch back clean
			break
		}
	}
	e.scratch.Put(p)
}

// marker sets the bits of candidates in a bitmap and tracks the span of
// words it touched.
type marker struct {
	words  []uint64
	bit    uint32
	lo, hi int
}

func (m *marker) mark(l []entry) {
	for _, x := range l {
		if x.ports&m.bit != 0 {
			i := int(x.rule >> 6)
			m.words[i] |= 1 << (uint32(x.rule) & 63)
			m.lo, m.hi = min(m.lo, i), max(m.hi, i)
		}
	}
}

func (m *marker) markGroups(idx [][]entry, gs []int32) {
	for _, g := range gs {
		m.mark(idx[g])
	}
}

func appendLists(h [][]entry, idx [][]entry, gs []int32) [][]entry {
	for _, g := range gs {
		if l := idx[g]; len(l) > 0 {
			h = append(h, l)
		}
	}
	return h
}

// visit checks one candidate rule. The side it was reached through
// matches and the other is checked; for a rule reached through the
// only-list of the side not walked, that check repeats one that holds.
func (w *walk) visit(ri int32, bySrc bool) {
	e := w.e
	r := &e.rules[ri]
	var hit [2]bool
	applies := false
	for i := 0; i < w.np; i++ {
		p := &w.ps[i]
		if p.enf < 0 && r.dir&p.dir != 0 && e.appliesTo(r.section, p.wl) {
			hit[i], applies = true, true
		}
	}
	if !applies {
		return
	}
	if bySrc {
		if r.dstN != 0 && !member(e.dstOf(r), w.dstGs, w.dstCtx) {
			return
		}
	} else if r.srcN != 0 && !member(e.srcOf(r), w.srcGs, w.srcCtx) {
		return
	}
	if (r.svcN != 0 || r.noService) && !w.serviceMatch(r) {
		return
	}
	if r.profN != 0 && !w.profileMatch(r) {
		return
	}
	for i := 0; i < w.np; i++ {
		if !hit[i] {
			continue
		}
		p := &w.ps[i]
		if p.stage < 0 {
			p.stage = ri
		}
		if !r.staged {
			p.enf = ri
			w.pending--
		}
	}
}

func (w *walk) serviceMatch(r *rule) bool {
	f := w.f
	for _, spec := range w.e.specs[r.svcOff : r.svcOff+uint32(r.svcN)] {
		if spec.Matches(f.Proto, f.Port, f.ICMPType, f.ICMPCode) {
			return true
		}
	}
	return false
}

func (w *walk) profileMatch(r *rule) bool {
	for _, pi := range w.e.profRefs[r.profOff : r.profOff+uint32(r.profN)] {
		if w.e.profiles[pi].matches(w.f, w.fqdn) {
			return true
		}
	}
	return false
}

func (e *Evaluator) appliesTo(section int32, wl int32) bool {
	s := e.scoped[section]
	if s < 0 {
		return true
	}
	word := e.applied[int(wl)*e.stride+int(s>>6)]
	return word&(1<<(uint(s)&63)) != 0
}

// member reports whether one of the rule's groups is among the endpoint's
// identity groups (sorted) or contextual groups.
func member(ruleGs, identGs, ctx []int32) bool {
	for _, g := range ruleGs {
		if containsSorted(identGs, g) {
			return true
		}
		for _, c := range ctx {
			if c == g {
				return true
			}
		}
	}
	return false
}

func containsSorted(s []int32, x int32) bool {
	i, j := 0, len(s)
	for i < j {
		h := int(uint(i+j) >> 1)
		if s[h] < x {
			i = h + 1
		} else {
			j = h
		}
	}
	return i < len(s) && s[i] == x
}

// The rule lists of an endpoint's groups are merged in rule order with a
// binary min-heap of the lists' remaining tails, keyed by their heads.
// The heap is a local slice passed by value so that it stays on the stack.

// pop removes the smallest head and returns it with the shrunk heap.
func pop(h [][]entry) (entry, [][]entry) {
	top := h[0]
	r := top[0]
	if len(top) > 1 {
		h[0] = top[1:]
	} else {
		n := len(h) - 1
		h[0] = h[n]
		h = h[:n]
	}
	if len(h) > 1 {
		siftDown(h, 0)
	}
	return r, h
}

func siftDown(h [][]entry, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h[r][0].rule < h[l][0].rule {
			c = r
		}
		if h[i][0].rule <= h[c][0].rule {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
