package ids

import (
	"bytes"
	"io"
	"math/bits"
	"unicode/utf8"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// recursionBudget bounds the backtracking of one group's match (like
// Suricata's inspection recursion limit): a pathological rule on a
// pathological buffer gives up instead of running for ever.
const recursionBudget = 3000

// mstate is one group's match over one buffer.
type mstate struct {
	buf []byte
	// base is the absolute offset of buf[0] in its stream (0 but for the
	// stream context, where buf is a window that may start later):
	// offset/depth/absolute positions count from the stream's start.
	base int
	// minEnd: the match must extend past this position in buf (the
	// stream context reports a match only once, when its last byte
	// arrives); -1 for none.
	minEnd int
	budget int
	// first and end are where the match found lies: the start of its
	// first positive content or pcre and the furthest end of one (-1 when
	// it has none).
	first, end int
	sc         *matchScratch
	g          *mgroup
	// ascii is whether buf holds only bytes below 0x80: 0 not known yet,
	// 1 yes, 2 no.
	ascii int8
}

// matchScratch is what matching reuses from one rule to the next: an
// Inspector has one, so matching allocates nothing.
type matchScratch struct {
	latin1 latin1Reader
	// payASCII caches isASCII of the payload buffer of one evaluation
	// (as mstate.ascii).
	payASCII int8
}

// latin1Reader reads each byte as one rune 0x00-0xff, as PCRE does: the
// regexp of a Latin1 pcre runs over it, and since every rune is one byte
// the offsets it returns are byte offsets.
type latin1Reader struct {
	b []byte
	i int
}

func (r *latin1Reader) ReadRune() (rune, int, error) {
	if r.i >= len(r.b) {
		return 0, 0, io.EOF
	}
	c := r.b[r.i]
	r.i++
	return rune(c), 1, nil
}

// isASCII says (and remembers) whether the buffer is pure ASCII.
func (st *mstate) isASCII() bool {
	if st.ascii == 0 {
		st.ascii = 2
		if isASCII(st.buf) {
			st.ascii = 1
		}
	}
	return st.ascii == 1
}

// findPCRE is the leftmost match of the pcre in buf[from:], as offsets in
// buf. The required run is checked first; a Latin1 expression reads the
// bytes one rune each unless they are all ASCII, where the two readings
// agree and the faster []byte one is taken.
func findPCRE(m *cmatch, st *mstate, from int) (lo, hi int, ok bool) {
	w := st.buf[from:]
	ascii := st.isASCII()
	req := m.reqAny
	if ascii {
		req = m.reqASCII
	}
	if req != nil && !req.in(w) {
		return 0, 0, false
	}
	var loc []int
	if m.Latin1 && !ascii {
		rd := &st.sc.latin1
		*rd = latin1Reader{b: w}
		loc = m.re.FindReaderIndex(rd)
		rd.b = nil
	} else {
		loc = m.re.FindIndex(w)
	}
	if loc == nil {
		return 0, 0, false
	}
	return from + loc[0], from + loc[1], true
}

// possible is a cheap necessary condition for the group on st.buf: every
// positive content occurs in the buffer (in its absolute window when it
// is not relative) and every positive pcre's required run too. It runs
// before the group's full match, so that the regular expressions of a
// rule whose contents are not all there do not run at all.
func possible(g *mgroup, st *mstate) bool {
	for i := range g.ms {
		m := &g.ms[i]
		if m.Negated {
			continue
		}
		switch m.Kind {
		case rules.MatchContent:
			lo, hi := 0, len(st.buf)
			if !relative(&m.Match) {
				lo, hi = contentWindow(m, 0, st)
			}
			if lo > hi || find(m, st.buf, lo, hi) < 0 {
				return false
			}
		case rules.MatchPCRE:
			req := m.reqAny
			if st.isASCII() {
				req = m.reqASCII
			}
			if req != nil && !req.in(st.buf) {
				return false
			}
		}
	}
	return true
}

// matchGroup says whether the group's matches hold on st.buf.
func matchGroup(g *mgroup, st *mstate) bool {
	if !possible(g, st) {
		return false
	}
	st.budget = recursionBudget
	st.g = g
	return matchFrom(g.ms, 0, 0, -1, -1, st, g.positive)
}

// matchFrom tries ms[i:] with the cursor (the end of the previous
// positional match) at prev; maxEnd is the furthest end of a positive
// match so far.
func matchFrom(ms []cmatch, i, prev, first, maxEnd int, st *mstate, positive bool) bool {
	if st.budget--; st.budget < 0 {
		return false
	}
	if i == len(ms) {
		if positive && st.minEnd >= 0 && maxEnd <= st.minEnd {
			return false
		}
		st.first, st.end = first, maxEnd
		return true
	}
	m := &ms[i]
	buf := st.buf
	switch m.Kind {
	case rules.MatchContent:
		lo, hi := contentWindow(m, prev, st)
		if m.Negated {
			if lo <= hi && find(m, buf, lo, hi) >= 0 {
				return false
			}
			return matchFrom(ms, i+1, prev, first, maxEnd, st, positive)
		}
		for lo <= hi {
			p := find(m, buf, lo, hi)
			if p < 0 {
				return false
			}
			end := p + len(m.Pattern)
			if m.EndsWith && end != len(buf) {
				lo = p + 1
				continue
			}
			if matchFrom(ms, i+1, end, firstOr(first, end-len(m.Pattern)), max(maxEnd, end), st, positive) {
				return true
			}
			if !m.retry && (st.minEnd < 0 || !positive) {
				return false
			}
			if st.budget < 0 {
				return false
			}
			lo = p + 1
		}
		return false
	case rules.MatchPCRE:
		start := 0
		if m.Relative {
			start = prev
		} else if st.minEnd >= 0 && !m.Negated && m.maxRunes >= 0 && !m.lookbehind && st.g.sole >= 0 && &st.g.ms[st.g.sole] == m {
			// A new stream match ends past minEnd: it starts no more
			// than its width before.
			w := m.maxRunes
			if !m.Latin1 && !st.isASCII() {
				w *= utf8.UTFMax
			}
			start = max(0, st.minEnd-w+1)
		}
		if start > len(buf) {
			return m.Negated && matchFrom(ms, i+1, prev, first, maxEnd, st, positive)
		}
		lo, end, found := findPCRE(m, st, start)
		if m.Negated {
			if found {
				return false
			}
			return matchFrom(ms, i+1, prev, first, maxEnd, st, positive)
		}
		for found {
			if matchFrom(ms, i+1, end, firstOr(first, lo), max(maxEnd, end), st, positive) {
				return true
			}
			// A stream match must reach the new bytes: the leftmost one
			// may lie in the old part and a later one not. Retry after
			// it (not for an anchored expression, which has one place).
			if st.minEnd < 0 || m.anchored || end > st.minEnd || st.budget < 0 {
				return false
			}
			start = max(end, lo+1)
			if start > len(buf) {
				return false
			}
			st.budget--
			lo, end, found = findPCRE(m, st, start)
		}
		return false
	case rules.MatchByteTest:
		pos := m.ByteOffset - st.base
		if m.Relative {
			pos = prev + m.ByteOffset
		}
		v, ok := readNum(buf, pos, &m.Match)
		if !ok {
			return false
		}
		if cmpInt(&m.Int, v) == m.Negated {
			return false
		}
		return matchFrom(ms, i+1, prev, first, maxEnd, st, positive)
	case rules.MatchByteJump:
		pos := m.ByteOffset - st.base
		if m.Relative {
			pos = prev + m.ByteOffset
		}
		v, ok := readNum(buf, pos, &m.Match)
		if !ok {
			return false
		}
		mul := m.Multiplier
		if mul == 0 {
			mul = 1
		}
		jump := int64(v) * int64(mul)
		if m.Align && jump%4 != 0 {
			jump += 4 - jump%4
		}
		from := int64(pos + m.Bytes)
		if m.FromBeginning {
			from = int64(-st.base)
		}
		np := from + jump + int64(m.PostOffset)
		if np < 0 || np > int64(len(buf)) {
			return false
		}
		return matchFrom(ms, i+1, int(np), first, maxEnd, st, positive)
	case rules.MatchIsDataAt:
		// Suricata's reading: absolute N asks for a byte at offset N;
		// relative N for N more bytes after the previous match.
		has := int(m.Int.Value)-st.base < len(buf)
		if m.Relative {
			has = prev+int(m.Int.Value) <= len(buf)
		}
		if has == m.Negated {
			return false
		}
		return matchFrom(ms, i+1, prev, first, maxEnd, st, positive)
	case rules.MatchBsize, rules.MatchUrilen:
		if !cmpInt(&m.Int, uint64(len(buf))) {
			return false
		}
		return matchFrom(ms, i+1, prev, first, maxEnd, st, positive)
	}
	return false
}

// contentWindow is where a content may lie: it starts at lo or later and
// ends at hi or before.
func contentWindow(m *cmatch, prev int, st *mstate) (lo, hi int) {
	n := len(st.buf)
	hi = n
	switch {
	case m.StartsWith:
		lo = -st.base
		hi = lo + len(m.Pattern)
	case m.HasDistance || m.HasWithin:
		lo = prev
		if m.HasDistance {
			lo += m.Distance
		}
		if m.HasWithin {
			hi = lo + m.Within
		}
	default:
		lo = -st.base
		if m.HasOffset {
			lo += m.Offset
		}
		if m.HasDepth {
			hi = lo + m.Depth
		}
	}
	if lo < 0 {
		lo = 0
	}
	if hi > n {
		hi = n
	}
	return lo, hi
}

// find is the first start p >= lo of the pattern with p+len <= hi, or -1.
func find(m *cmatch, buf []byte, lo, hi int) int {
	pl := len(m.Pattern)
	if hi-lo < pl {
		return -1
	}
	w := buf[lo:hi]
	if !m.Nocase {
		if p := bytes.Index(w, m.Pattern); p >= 0 {
			return lo + p
		}
		return -1
	}
	return indexFold(w, m.folded, lo)
}

// indexFold finds folded (already lower case) in w ignoring ASCII case.
func indexFold(w, folded []byte, base int) int {
	first := folded[0]
	upper := first
	if 'a' <= first && first <= 'z' {
		upper = first - ('a' - 'A')
	}
	last := len(w) - len(folded)
	for i := 0; i <= last; {
		j := bytes.IndexByte(w[i:last+1], first)
		if upper != first {
			if k := bytes.IndexByte(w[i:last+1], upper); k >= 0 && (j < 0 || k < j) {
				j = k
			}
		}
		if j < 0 {
			return -1
		}
		i += j
		if equalFolded(w[i:i+len(folded)], folded) {
			return base + i
		}
		i++
	}
	return -1
}

func equalFolded(b, folded []byte) bool {
	for i, c := range b {
		if foldTable[c] != folded[i] {
			return false
		}
	}
	return true
}

// readNum reads byte_test/byte_jump's number at pos.
func readNum(buf []byte, pos int, m *rules.Match) (uint64, bool) {
	if pos < 0 || pos+m.Bytes > len(buf) || m.Bytes <= 0 {
		return 0, false
	}
	b := buf[pos : pos+m.Bytes]
	var v uint64
	if m.String {
		base := uint64(m.Base)
		if base == 0 {
			base = 10
		}
		n := 0
	digits:
		for _, c := range b {
			var d uint64
			switch {
			case '0' <= c && c <= '9':
				d = uint64(c - '0')
			case 'a' <= c && c <= 'f':
				d = uint64(c-'a') + 10
			case 'A' <= c && c <= 'F':
				d = uint64(c-'A') + 10
			default:
				d = 255
			}
			if d >= base {
				break digits
			}
			v = v*base + d
			n++
		}
		if n == 0 {
			return 0, false
		}
	} else if m.Endian == rules.LittleEndian {
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
	} else {
		for _, c := range b {
			v = v<<8 | uint64(c)
		}
	}
	if m.Bitmask != 0 {
		v &= m.Bitmask
		v >>= uint(bits.TrailingZeros64(m.Bitmask))
	}
	return v, true
}

// cmpInt applies an integer comparison.
func cmpInt(c *rules.IntMatch, x uint64) bool {
	switch c.Cmp {
	case rules.CmpEq:
		return x == c.Value
	case rules.CmpNe:
		return x != c.Value
	case rules.CmpLt:
		return x < c.Value
	case rules.CmpLe:
		return x <= c.Value
	case rules.CmpGt:
		return x > c.Value
	case rules.CmpGe:
		return x >= c.Value
	case rules.CmpRange:
		return c.Min < x && x < c.Max
	case rules.CmpAnd:
		return x&c.Value != 0
	case rules.CmpXor:
		return x^c.Value != 0
	}
	return false
}

func firstOr(first, p int) int {
	if first >= 0 {
		return first
	}
	return p
}
