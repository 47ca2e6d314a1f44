package ids

import (
	"bytes"
	"math"
	"math/bits"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// Go's regexp runs at a few tens of MB/s, far below the prefilter, and many
// rules have no fast pattern but a regular expression (ET's credit card and
// "FOUO" policy rules run on every packet or stream chunk). A regular
// expression's syntax tree tells which run of byte classes every match
// contains ("(UNCLASSIFIED|U)//(FOR...|FOUO)" contains [dDuU] / / [fF] [oO]);
// finding that run is a byte scan, and where it is absent the expression
// cannot match and does not run. The check is necessary, never sufficient:
// it can only skip work, not change what matches.

// byteClass is a set of bytes.
type byteClass [4]uint64

func (c *byteClass) add(b byte)      { c[b>>6] |= 1 << (b & 63) }
func (c *byteClass) has(b byte) bool { return c[b>>6]&(1<<(b&63)) != 0 }
func (c *byteClass) union(d *byteClass) {
	c[0], c[1], c[2], c[3] = c[0]|d[0], c[1]|d[1], c[2]|d[2], c[3]|d[3]
}
func (c *byteClass) count() int {
	return bits.OnesCount64(c[0]) + bits.OnesCount64(c[1]) + bits.OnesCount64(c[2]) + bits.OnesCount64(c[3])
}
func (c *byteClass) addRange(lo, hi int) {
	for r := lo; r <= hi; r++ {
		c.add(byte(r))
	}
}

// reqRun is a run of byte classes.
type reqRun struct {
	cls []byteClass
	// anchor is the position of the rarest class, found with
	// bytes.IndexByte when it has one or two members (anchorBytes).
	anchor      int
	anchorBytes []byte
}

// reqSeq is runs of byte classes every match of an expression contains,
// in this order and without overlapping.
type reqSeq struct {
	runs []reqRun
	// lits, when set, are literals one of which every match contains
	// (ASCII case folded): "(FREE XXX|dildo|...)" has no selective run.
	lits    *prefilter
	litPats [][]byte
}

// runeMode says how an expression's runes meet the input's bytes.
type runeMode uint8

const (
	// modeASCII: the input is pure ASCII, each byte is one rune below
	// 0x80 (both the UTF-8 and the Latin-1 reading agree).
	modeASCII runeMode = iota
	// modeLatin1: each byte is one rune 0x00-0xff.
	modeLatin1
	// modeUTF8: the input is read as UTF-8; a rune above 0x7f may take
	// one byte (invalid, read as U+FFFD) or several, so it ends a run.
	modeUTF8
)

const (
	maxReqLen  = 32 // classes kept in a run
	maxReqRuns = 24 // runs kept in a sequence
	minRunBits = 4  // a run less selective is dropped
	minReqBits = 8  // a sequence less selective than one fixed byte is not worth a scan
)

// reqInfo is what every match of a subexpression contains: exact says
// each match is exactly seq (one byte per class); otherwise each match
// starts with pre, ends with suf and holds mids in order between them,
// none of them overlapping.
type reqInfo struct {
	exact bool
	seq   []byteClass
	pre   []byteClass
	mids  [][]byteClass
	suf   []byteClass
}

// requiredSeq is the runs of byte classes every match of expr contains
// when the input is read as mode says, or nil when they are not
// selective enough to be worth a scan.
func requiredSeq(expr string, mode runeMode) *reqSeq {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	return requiredOf(re.Simplify(), mode)
}

// requiredOf is requiredSeq of a parsed and simplified expression.
func requiredOf(re *syntax.Regexp, mode runeMode) *reqSeq {
	in := reqOf(re, mode)
	chain := [][]byteClass{in.seq}
	if !in.exact {
		chain = append(append([][]byteClass{in.pre}, in.mids...), in.suf)
	}
	s := &reqSeq{}
	total := 0.0
	for _, c := range chain {
		b := seqBits(c)
		if b < minRunBits {
			continue
		}
		total += b
		s.runs = append(s.runs, newRun(c))
	}
	if total < 3*minReqBits {
		if ls, ok := literalSet(re, mode); ok && len(ls) > 0 {
			short := false
			for _, l := range ls {
				short = short || len(l) < minFactorLen
			}
			if !short {
				s.lits = newPrefilterDense(ls, make([]int32, len(ls)), 16)
				s.litPats = ls
			}
		}
	}
	if total < minReqBits && s.lits == nil {
		return nil
	}
	return s
}

const maxLits = 64

// literalSet is literals one of which every match of re contains, as
// the input holds them (compared with ASCII case folded); ok false when
// there is no such set of at most maxLits.
func literalSet(re *syntax.Regexp, mode runeMode) (ls [][]byte, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		b, ok := literalBytes(re.Rune, re.Flags&syntax.FoldCase != 0, mode)
		return [][]byte{b}, ok
	case syntax.OpCapture, syntax.OpPlus:
		return literalSet(re.Sub[0], mode)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literalSet(re.Sub[0], mode)
		}
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			sl, ok := literalSet(s, mode)
			if !ok {
				return nil, false
			}
			ls = append(ls, sl...)
			if len(ls) > maxLits {
				return nil, false
			}
		}
		return ls, true
	case syntax.OpConcat:
		// The child with the longest shortest literal stands for all.
		var best [][]byte
		bestScore := 0
		for _, s := range re.Sub {
			sl, ok := literalSet(s, mode)
			if !ok || len(sl) == 0 {
				continue
			}
			score := 1 << 30
			for _, l := range sl {
				score = min(score, len(l))
			}
			if score > bestScore {
				best, bestScore = sl, score
			}
		}
		return best, best != nil
	}
	return nil, false
}

// literalBytes is a literal as the input holds it, or false when the
// prefilter's ASCII case folding cannot stand for the expression's.
func literalBytes(rs []rune, fold bool, mode runeMode) ([]byte, bool) {
	var b []byte
	for _, r := range rs {
		if fold {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				if (f > 0x7f || r > 0x7f) && mode != modeASCII {
					return nil, false
				}
			}
		}
		switch {
		case r <= 0x7f:
			b = append(b, byte(r))
		case mode == modeLatin1:
			if r > 0xff {
				return nil, false
			}
			b = append(b, byte(r))
		case r == utf8.RuneError && mode == modeUTF8:
			return nil, false // it also stands for any invalid byte
		default:
			// In ASCII input it never occurs, which is what it says.
			b = utf8.AppendRune(b, r)
		}
	}
	return b, true
}

func newRun(c []byteClass) reqRun {
	r := reqRun{cls: c}
	rare := 1 << 30
	for i := range c {
		if w := commonness(&c[i]); w < rare {
			r.anchor, rare = i, w
		}
	}
	if c[r.anchor].count() <= 2 {
		for b := 0; b < 256; b++ {
			if c[r.anchor].has(byte(b)) {
				r.anchorBytes = append(r.anchorBytes, byte(b))
			}
		}
	}
	return r
}

// commonness is how often a class's bytes are expected in traffic (text
// and binary protocols alike): the anchor of a run is its least common
// class, where a scan stops least often.
func commonness(c *byteClass) int {
	w := 0
	for k := range c {
		w += 16*bits.OnesCount64(c[k]&commonSpace[k]) + 6*bits.OnesCount64(c[k]&commonLower[k]) +
			3*bits.OnesCount64(c[k]&commonMid[k]) + bits.OnesCount64(c[k]&^(commonSpace[k]|commonLower[k]|commonMid[k]))
	}
	return w
}

var commonSpace, commonLower, commonMid = func() (sp, lo, mid byteClass) {
	sp.add(' ')
	lo.addRange('a', 'z')
	mid.addRange('0', '9')
	mid.addRange('A', 'Z')
	for _, b := range []byte{0, '\r', '\n', 0xff} {
		mid.add(b)
	}
	return
}()

// seqBits is how selective a run is: the information of its classes.
func seqBits(s []byteClass) float64 {
	total := 0.0
	for i := range s {
		n := s[i].count()
		if n == 0 {
			total += 8
			continue
		}
		total += math.Log2(256 / float64(n))
	}
	return total
}

// broken is a subexpression about which nothing is known.
var broken = reqInfo{}

func reqOf(re *syntax.Regexp, mode runeMode) reqInfo {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return reqInfo{exact: true}
	case syntax.OpLiteral:
		parts := make([]reqInfo, 0, len(re.Rune))
		var seq []byteClass
		for _, r := range re.Rune {
			p := runeReq(r, re.Flags&syntax.FoldCase != 0, mode)
			seq = append(seq, p.seq...)
			parts = append(parts, p)
		}
		if len(seq) <= maxReqLen {
			all := true
			for _, p := range parts {
				all = all && p.exact
			}
			if all {
				return reqInfo{exact: true, seq: seq}
			}
		}
		return concatReq(parts)
	case syntax.OpCharClass:
		var c byteClass
		for j := 0; j+1 < len(re.Rune); j += 2 {
			lo, hi := int(re.Rune[j]), int(re.Rune[j+1])
			switch mode {
			case modeASCII:
				hi = min(hi, 0x7f)
			case modeLatin1:
				hi = min(hi, 0xff)
			case modeUTF8:
				if hi > 0x7f {
					return broken
				}
			}
			if lo <= hi {
				c.addRange(lo, hi)
			}
		}
		return reqInfo{exact: true, seq: []byteClass{c}}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		if mode == modeUTF8 {
			return broken
		}
		var c byteClass
		c.addRange(0, 0xff)
		if re.Op == syntax.OpAnyCharNotNL {
			c[0] &^= 1 << '\n'
		}
		return reqInfo{exact: true, seq: []byteClass{c}}
	case syntax.OpCapture:
		return reqOf(re.Sub[0], mode)
	case syntax.OpPlus:
		return atLeastOnce(reqOf(re.Sub[0], mode))
	case syntax.OpRepeat:
		if re.Min < 1 {
			return broken
		}
		// Simplify expands repeats; one left over has at least one copy.
		return atLeastOnce(reqOf(re.Sub[0], mode))
	case syntax.OpConcat:
		parts := make([]reqInfo, 0, len(re.Sub))
		for _, s := range re.Sub {
			parts = append(parts, reqOf(s, mode))
		}
		return concatReq(parts)
	case syntax.OpAlternate:
		return alternateReq(re.Sub, mode)
	}
	// Star, Quest, NoMatch and anything new: no requirement.
	return broken
}

// atLeastOnce is x repeated one or more times: the first copy's start,
// the last copy's end. A single copy's whole is both, so an exact x is
// kept as the start only (start and end must not overlap).
func atLeastOnce(in reqInfo) reqInfo {
	if in.exact {
		return reqInfo{pre: in.seq}
	}
	return in
}

// runeReq is one literal rune as the input holds it.
func runeReq(r rune, fold bool, mode runeMode) reqInfo {
	limit := rune(0x7f)
	if mode == modeLatin1 {
		limit = 0xff
	}
	if mode == modeUTF8 {
		if fold {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				if f > 0x7f {
					return broken // (?i)k also matches the Kelvin sign
				}
			}
		}
		if r > 0x7f {
			if fold || r == utf8.RuneError {
				return broken
			}
			var buf [utf8.UTFMax]byte
			n := utf8.EncodeRune(buf[:], r)
			s := make([]byteClass, n)
			for j := 0; j < n; j++ {
				s[j].add(buf[j])
			}
			return reqInfo{exact: true, seq: s}
		}
	}
	var c byteClass
	if r <= limit {
		c.add(byte(r))
	}
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f <= limit {
				c.add(byte(f))
			}
		}
	}
	// An empty class (a rune the input cannot hold) is a run that never
	// occurs: the expression cannot match such input.
	return reqInfo{exact: true, seq: []byteClass{c}}
}

func concatReq(parts []reqInfo) reqInfo {
	var out reqInfo
	var run []byteClass // owned: no other info shares its array
	seenInexact, total := false, 0
	for _, p := range parts {
		if p.exact {
			total += len(p.seq)
			if !seenInexact {
				// A prefix keeps its first classes.
				run = append(run, p.seq[:min(len(p.seq), max(0, maxReqLen-len(run)))]...)
				continue
			}
			run = append(run, p.seq...)
			if len(run) > maxReqLen {
				run = run[len(run)-maxReqLen:]
			}
			continue
		}
		if !seenInexact {
			out.pre = run // cut short: what follows is not next to it
			if total <= maxReqLen {
				out.pre = appendRun(run, p.pre, false)
			}
			seenInexact = true
		} else {
			out.mids = appendMid(out.mids, appendRun(run, p.pre, true))
		}
		for _, m := range p.mids {
			out.mids = appendMid(out.mids, m)
		}
		run = append([]byteClass(nil), p.suf...)
	}
	if !seenInexact {
		if total <= maxReqLen {
			return reqInfo{exact: true, seq: run}
		}
		// run holds the first maxReqLen classes; the end is unknown here.
		return reqInfo{pre: run}
	}
	out.suf = run
	return out
}

// appendRun appends b to a copy of a, keeping at most maxReqLen classes:
// the last ones when keepEnd (a suffix or a run in the middle), else the
// first (a prefix stays a prefix).
func appendRun(a, b []byteClass, keepEnd bool) []byteClass {
	s := append(append(make([]byteClass, 0, len(a)+len(b)), a...), b...)
	if len(s) > maxReqLen {
		if keepEnd {
			return s[len(s)-maxReqLen:]
		}
		return s[:maxReqLen]
	}
	return s
}

func appendMid(mids [][]byteClass, m []byteClass) [][]byteClass {
	if len(m) == 0 || len(mids) >= maxReqRuns {
		return mids
	}
	return append(mids, m)
}

// alternateReq: every alternative's runs are merged class by class, from
// the start (pre) and from the end (suf).
func alternateReq(subs []*syntax.Regexp, mode runeMode) reqInfo {
	ins := make([]reqInfo, len(subs))
	allExact := true
	for j, s := range subs {
		ins[j] = reqOf(s, mode)
		allExact = allExact && ins[j].exact && len(ins[j].seq) == len(ins[0].seq)
	}
	if allExact {
		seq := make([]byteClass, len(ins[0].seq))
		for _, in := range ins {
			for k := range seq {
				seq[k].union(&in.seq[k])
			}
		}
		return reqInfo{exact: true, seq: seq}
	}
	starts := func(in reqInfo) []byteClass {
		if in.exact {
			return in.seq
		}
		return in.pre
	}
	ends := func(in reqInfo) []byteClass {
		if in.exact {
			return in.seq
		}
		return in.suf
	}
	np, ns := maxReqLen, maxReqLen
	for _, in := range ins {
		np, ns = min(np, len(starts(in))), min(ns, len(ends(in)))
	}
	// An exact alternative is both start and end: they must not overlap.
	for _, in := range ins {
		if in.exact && np+ns > len(in.seq) {
			ns = max(0, len(in.seq)-np)
		}
	}
	pre, suf := make([]byteClass, np), make([]byteClass, ns)
	for _, in := range ins {
		s, e := starts(in), ends(in)
		for k := range pre {
			pre[k].union(&s[k])
		}
		for k := range suf {
			suf[k].union(&e[len(e)-ns+k])
		}
	}
	return reqInfo{pre: pre, suf: suf}
}

// in says whether the runs occur in b, in order, and one of the
// literals.
func (s *reqSeq) in(b []byte) bool {
	if s.lits != nil && !s.lits.any(b) {
		return false
	}
	pos := 0
	for k := range s.runs {
		p := s.runs[k].index(b, pos)
		if p < 0 {
			return false
		}
		pos = p + len(s.runs[k].cls)
	}
	return true
}

// index is the first position p >= from where the run occurs in b, or -1.
func (r *reqRun) index(b []byte, from int) int {
	n := len(r.cls)
	a := r.anchor
	last := len(b) - (n - a) // the anchor's last possible position
	for i := from + a; i <= last; {
		switch len(r.anchorBytes) {
		case 1:
			j := bytes.IndexByte(b[i:last+1], r.anchorBytes[0])
			if j < 0 {
				return -1
			}
			i += j
		case 2:
			w := b[i : last+1]
			j := bytes.IndexByte(w, r.anchorBytes[0])
			if k := bytes.IndexByte(w, r.anchorBytes[1]); k >= 0 && (j < 0 || k < j) {
				j = k
			}
			if j < 0 {
				return -1
			}
			i += j
		default:
			if !r.cls[a].has(b[i]) {
				i++
				continue
			}
		}
		if r.matchAt(b, i-a) {
			return i - a
		}
		i++
	}
	return -1
}

func (r *reqRun) matchAt(b []byte, p int) bool {
	for k := range r.cls {
		if !r.cls[k].has(b[p+k]) {
			return false
		}
	}
	return true
}

// isASCII says whether b holds no byte above 0x7f.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		v := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if v&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// maxRunes is the most runes a match of re can span, or -1 when unbounded.
func maxRunes(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpQuest:
		return maxRunes(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return -1
	case syntax.OpRepeat:
		n := maxRunes(re.Sub[0])
		if n < 0 || re.Max < 0 || n > 1<<20 {
			return -1
		}
		return n * re.Max
	case syntax.OpConcat, syntax.OpAlternate:
		total := 0
		for _, s := range re.Sub {
			n := maxRunes(s)
			if n < 0 {
				return -1
			}
			if re.Op == syntax.OpConcat {
				total += n
				if total > 1<<30 {
					return -1
				}
			} else {
				total = max(total, n)
			}
		}
		return total
	}
	return 0
}

const (
	maxSpelled     = 128 // literals a run may spell for the prefilter
	minSpelledBits = 16  // and how selective they must be
)

// literals is a set of literals one of which every match contains, for
// the prefilter (which folds ASCII case): the most selective piece of a
// required run that spells at most maxSpelled of them, or the literal
// set. nil when there is none selective enough.
func (s *reqSeq) literals() [][]byte {
	if s == nil {
		return nil
	}
	bestBits, bi, blo, bhi := 0.0, -1, 0, 0
	for ri := range s.runs {
		cls := s.runs[ri].cls
		folded := make([][]byte, len(cls))
		for k := range cls {
			folded[k] = foldedMembers(&cls[k])
		}
		for lo := range cls {
			n, bitsSum := 1, 0.0
			for hi := lo; hi < len(cls); hi++ {
				m := len(folded[hi])
				if m == 0 || n*m > maxSpelled {
					break
				}
				n *= m
				bitsSum += math.Log2(256 / float64(cls[hi].count()))
				if bitsSum > bestBits {
					bestBits, bi, blo, bhi = bitsSum, ri, lo, hi+1
				}
			}
		}
	}
	if bi >= 0 && bestBits >= minSpelledBits {
		cls := s.runs[bi].cls[blo:bhi]
		out := [][]byte{nil}
		for k := range cls {
			var next [][]byte
			for _, p := range out {
				for _, b := range foldedMembers(&cls[k]) {
					next = append(next, append(append([]byte(nil), p...), b))
				}
			}
			out = next
		}
		return out
	}
	if s.lits != nil {
		return s.litPats
	}
	return nil
}

// foldedMembers is the class's bytes, an ASCII letter's two cases as one
// (the lower).
func foldedMembers(c *byteClass) []byte {
	var out []byte
	for b := 0; b < 256; b++ {
		if c.has(byte(b)) && (foldTable[b] == byte(b) || !c.has(foldTable[b])) {
			out = append(out, foldTable[b])
		}
	}
	return out
}

// widthOf is maxRunes of expr, and whether it has an assertion about
// what precedes a position (^, \A, \b, \B).
func widthOf(expr string) (n int, lookbehind bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return -1, true
	}
	return maxRunes(re), hasLookbehind(re)
}

func hasLookbehind(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	}
	for _, s := range re.Sub {
		if hasLookbehind(s) {
			return true
		}
	}
	return false
}
