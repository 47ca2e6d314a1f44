package ids

import (
	"regexp/syntax"
	"unicode/utf8"
)

// Rules whose only payload conditions are regular expressions still need
// a prefilter entry, or they run on every packet of their protocol. A
// regular expression yields one when every match must contain one of a
// few literals: those become the rule's fast patterns (a hit on any makes
// it a candidate; the expression then verifies).

const (
	minFactorLen = 3  // shorter literals would make most packets candidates
	maxFactors   = 16 // more alternatives than this: not worth it
)

// regexpFactors returns literals one of which every match of expr
// contains, or nil. latin1 says the expression is matched one byte a rune
// (rules.Match.Latin1): its runes up to 0xff are single bytes.
func regexpFactors(expr string, latin1 bool) [][]byte {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	fs, ok := factors(re.Simplify(), latin1)
	if !ok || len(fs) == 0 || len(fs) > maxFactors {
		return nil
	}
	for _, f := range fs {
		if len(f) < minFactorLen {
			return nil
		}
	}
	return fs
}

// factors: ok says every match contains one of fs.
func factors(re *syntax.Regexp, latin1 bool) (fs [][]byte, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		b, ok := literalRunes(re, latin1)
		return [][]byte{b}, ok
	case syntax.OpCapture:
		return factors(re.Sub[0], latin1)
	case syntax.OpPlus:
		return factors(re.Sub[0], latin1)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return factors(re.Sub[0], latin1)
		}
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			sf, ok := factors(s, latin1)
			if !ok {
				return nil, false
			}
			fs = append(fs, sf...)
			if len(fs) > maxFactors {
				return nil, false
			}
		}
		return fs, true
	case syntax.OpConcat:
		// Adjacent literals join into one; then the child with the best
		// set (the longest shortest literal) stands for the whole.
		best, bestScore := [][]byte(nil), 0
		consider := func(c [][]byte) {
			if len(c) == 0 || len(c) > maxFactors {
				return
			}
			score := 1 << 30
			for _, f := range c {
				score = min(score, len(f))
			}
			if score > bestScore {
				best, bestScore = c, score
			}
		}
		var run []byte
		for _, s := range re.Sub {
			if s.Op == syntax.OpLiteral {
				if b, ok := literalRunes(s, latin1); ok {
					run = append(run, b...)
					continue
				}
			}
			if len(run) > 0 {
				consider([][]byte{run})
				run = nil
			}
			if sf, ok := factors(s, latin1); ok {
				consider(sf)
			}
		}
		if len(run) > 0 {
			consider([][]byte{run})
		}
		return best, best != nil
	}
	return nil, false
}

// literalRunes is a literal as the prefilter looks for it.
func literalRunes(re *syntax.Regexp, latin1 bool) ([]byte, bool) {
	if latin1 {
		return literalBytes(re.Rune, re.Flags&syntax.FoldCase != 0, modeLatin1)
	}
	return runesBytes(re.Rune), true
}

func runesBytes(rs []rune) []byte {
	var b []byte
	for _, r := range rs {
		b = utf8.AppendRune(b, r)
	}
	return b
}
