package ids

import (
	"slices"
)

// prefilter is a case-folding Aho-Corasick automaton over the fast
// patterns of one buffer's rules. Every pattern is folded to lower case and
// so is the input as it is scanned: a hit makes the pattern's rules
// candidates, and the full match (which honours case) verifies them.
//
// States are numbered breadth first. The first denseStates of them (the
// root and the shallow states almost every byte passes through) have a full
// 256-entry row with the failure transitions folded in, so the common step
// is one load; deeper states keep sorted edges and a failure link.
type prefilter struct {
	dense [][256]int32 // rows for states < len(dense)
	// Sparse states: edges[edgeStart[s]:edgeStart[s+1]] sorted by byte.
	edgeStart []int32
	edgeByte  []byte
	edgeNext  []int32
	fail      []int32
	// out[s] is the first pattern ending at s (-1 none); dict[s] the
	// nearest state on the failure chain with an output (-1 none).
	out  []int32
	dict []int32
	// patRules[p] are the rules (engine indexes) whose fast pattern is p.
	patRules [][]int32
	maxLen   int
}

const denseStates = 4096

// Transitions carry outFlag when the state they lead to has an output
// (its own or by its dictionary link), so the scan tests one bit per byte.
const (
	outFlag   = 1 << 30
	stateMask = outFlag - 1
)

var foldTable = func() (t [256]byte) {
	for i := range t {
		b := byte(i)
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		t[i] = b
	}
	return t
}()

type acBuildNode struct {
	next map[byte]int32
	out  int32
}

// newPrefilter builds the automaton; pats[i] is folded here, rules[i] is
// the rule it belongs to. Identical patterns share one output.
func newPrefilter(pats [][]byte, ruleIdx []int32) *prefilter {
	return newPrefilterDense(pats, ruleIdx, denseStates)
}

// newPrefilterDense is newPrefilter with at most maxDense dense rows.
func newPrefilterDense(pats [][]byte, ruleIdx []int32, maxDense int) *prefilter {
	nodes := []acBuildNode{{next: map[byte]int32{}, out: -1}}
	pf := &prefilter{}
	patID := map[string]int32{}
	for i, p := range pats {
		folded := make([]byte, len(p))
		for j, c := range p {
			folded[j] = foldTable[c]
		}
		if id, ok := patID[string(folded)]; ok {
			pf.patRules[id] = append(pf.patRules[id], ruleIdx[i])
			continue
		}
		id := int32(len(pf.patRules))
		patID[string(folded)] = id
		pf.patRules = append(pf.patRules, []int32{ruleIdx[i]})
		pf.maxLen = max(pf.maxLen, len(folded))
		s := int32(0)
		for _, c := range folded {
			n, ok := nodes[s].next[c]
			if !ok {
				n = int32(len(nodes))
				nodes = append(nodes, acBuildNode{next: map[byte]int32{}, out: -1})
				nodes[s].next[c] = n
			}
			s = n
		}
		nodes[s].out = id
	}

	// Renumber breadth first so that shallow states get dense rows.
	order := []int32{0}
	for i := 0; i < len(order); i++ {
		n := nodes[order[i]]
		keys := make([]byte, 0, len(n.next))
		for c := range n.next {
			keys = append(keys, c)
		}
		slices.Sort(keys)
		for _, c := range keys {
			order = append(order, n.next[c])
		}
	}
	newID := make([]int32, len(nodes))
	for i, old := range order {
		newID[old] = int32(i)
	}
	ns := len(nodes)
	pf.fail = make([]int32, ns)
	pf.out = make([]int32, ns)
	pf.dict = make([]int32, ns)
	pf.edgeStart = make([]int32, ns+1)
	for i, old := range order {
		n := nodes[old]
		pf.out[i] = n.out
		pf.edgeStart[i] = int32(len(pf.edgeByte))
		keys := make([]byte, 0, len(n.next))
		for c := range n.next {
			keys = append(keys, c)
		}
		slices.Sort(keys)
		for _, c := range keys {
			pf.edgeByte = append(pf.edgeByte, c)
			pf.edgeNext = append(pf.edgeNext, newID[n.next[c]])
		}
	}
	pf.edgeStart[ns] = int32(len(pf.edgeByte))

	// Failure and dictionary links, breadth first (state order is BFS).
	pf.dict[0] = -1
	for s := int32(0); s < int32(ns); s++ {
		for e := pf.edgeStart[s]; e < pf.edgeStart[s+1]; e++ {
			c, t := pf.edgeByte[e], pf.edgeNext[e]
			if s == 0 {
				pf.fail[t] = 0
			} else {
				f := pf.fail[s]
				for {
					if n, ok := pf.child(f, c); ok {
						pf.fail[t] = n
						break
					}
					if f == 0 {
						pf.fail[t] = 0
						break
					}
					f = pf.fail[f]
				}
			}
			f := pf.fail[t]
			if pf.out[f] >= 0 {
				pf.dict[t] = f
			} else {
				pf.dict[t] = pf.dict[f]
			}
		}
	}

	for e, t := range pf.edgeNext {
		if pf.out[t] >= 0 || pf.dict[t] >= 0 {
			pf.edgeNext[e] = t | outFlag
		}
	}
	nd := min(ns, maxDense)
	pf.dense = make([][256]int32, nd)
	for s := 0; s < nd; s++ {
		for c := 0; c < 256; c++ {
			pf.dense[s][c] = pf.stepSparse(int32(s), byte(c))
		}
	}
	return pf
}

func (pf *prefilter) child(s int32, c byte) (int32, bool) {
	lo, hi := pf.edgeStart[s], pf.edgeStart[s+1]
	for lo < hi {
		m := int32(uint32(lo+hi) >> 1)
		if pf.edgeByte[m] < c {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < pf.edgeStart[s+1] && pf.edgeByte[lo] == c {
		return pf.edgeNext[lo], true
	}
	return 0, false
}

// stepSparse is a transition (flagged) from state s without dense rows.
func (pf *prefilter) stepSparse(s int32, c byte) int32 {
	for {
		if n, ok := pf.child(s, c); ok {
			return n
		}
		if s == 0 {
			return 0
		}
		s = pf.fail[s]
	}
}

// step is one transition on an already folded byte from an unflagged
// state; the result is flagged.
func (pf *prefilter) step(s int32, c byte) int32 {
	for {
		if int(s) < len(pf.dense) {
			return pf.dense[s][c]
		}
		if n, ok := pf.child(s, c); ok {
			return n
		}
		s = pf.fail[s]
	}
}

// hits adds the rules of every pattern ending in state s.
func (pf *prefilter) hits(s int32, pos uint64, cs *candSet) {
	for t := s; t >= 0; t = pf.dict[t] {
		if p := pf.out[t]; p >= 0 {
			for _, r := range pf.patRules[p] {
				cs.add(r)
				cs.pos[r] = pos
			}
		}
	}
}

// scan adds to cs every rule whose fast pattern occurs in b.
func (pf *prefilter) scan(b []byte, cs *candSet) {
	if pf == nil || len(pf.patRules) == 0 {
		return
	}
	pf.scanFrom(0, b, 0, cs)
}

// scanFrom is scan continuing from state s over b, whose first byte is at
// stream offset off: each candidate's pos is the stream offset after its
// pattern's last occurrence. It returns the state after b.
func (pf *prefilter) scanFrom(s int32, b []byte, off uint64, cs *candSet) int32 {
	if pf == nil || len(pf.patRules) == 0 {
		return 0
	}
	dense := pf.dense
	for j, c := range b {
		var v int32
		if int(s) < len(dense) {
			v = dense[s][foldTable[c]]
		} else {
			v = pf.step(s, foldTable[c])
		}
		s = v & stateMask
		if v&outFlag != 0 {
			pf.hits(s, off+uint64(j)+1, cs)
		}
	}
	return s
}

// any says whether one of the patterns occurs in b.
func (pf *prefilter) any(b []byte) bool {
	s := int32(0)
	dense := pf.dense
	for _, c := range b {
		var v int32
		if int(s) < len(dense) {
			v = dense[s][foldTable[c]]
		} else {
			v = pf.step(s, foldTable[c])
		}
		if v&outFlag != 0 {
			return true
		}
		s = v & stateMask
	}
	return false
}

// candSet collects rule indexes without duplicates and without allocating
// once grown: a stamp per rule says whether it is in the current list.
type candSet struct {
	stamp []uint32
	gen   uint32
	list  []int32
	pos   []uint64 // scanFrom's positions
}

// reset empties the set for rule indexes below n. It only grows, so an
// inspector that alternates between engines does not reallocate; stamps
// of an older generation are simply stale.
func (cs *candSet) reset(n int) {
	if len(cs.stamp) < n {
		cs.stamp = make([]uint32, n)
		cs.pos = make([]uint64, n)
		cs.gen = 0
	}
	cs.gen++
	if cs.gen == 0 {
		clear(cs.stamp)
		cs.gen = 1
	}
	cs.list = cs.list[:0]
}

func (cs *candSet) add(r int32) {
	if cs.stamp[r] == cs.gen {
		return
	}
	cs.stamp[r] = cs.gen
	cs.list = append(cs.list, r)
}
