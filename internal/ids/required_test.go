package ids

import (
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// pcreCase is a pcre as the engine runs it: the regexp, its required
// runs and its reading of the input.
type pcreCase struct {
	expr   string
	latin1 bool
	re     *regexp.Regexp
	ascii  *reqSeq
	any    *reqSeq
}

func newPCRECase(t testing.TB, expr string, latin1 bool) *pcreCase {
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("%q: %v", expr, err)
	}
	c := &pcreCase{expr: expr, latin1: latin1, re: re, ascii: requiredSeq(expr, modeASCII)}
	if latin1 {
		c.any = requiredSeq(expr, modeLatin1)
	} else {
		c.any = requiredSeq(expr, modeUTF8)
	}
	return c
}

// matches runs the regexp as findPCRE does, without the required runs.
func (c *pcreCase) matches(b []byte) bool {
	if c.latin1 {
		return c.re.MatchReader(&latin1Reader{b: b})
	}
	return c.re.Match(b)
}

// admits is the required runs' verdict (true: the regexp may match).
func (c *pcreCase) admits(b []byte) bool {
	req := c.any
	if isASCII(b) {
		req = c.ascii
	}
	return req == nil || req.in(b)
}

// check fails when the required runs reject input the regexp matches:
// the one thing they must never do.
func (c *pcreCase) check(t testing.TB, b []byte) {
	t.Helper()
	if c.matches(b) && !c.admits(b) {
		t.Errorf("%q (latin1 %v) matches %q but its required runs reject it", c.expr, c.latin1, b)
	}
}

func TestRequiredRuns(t *testing.T) {
	tests := []struct {
		expr       string
		admit      []string
		reject     []string
		selective  bool // expected to have runs at all
		latin1     bool
		matchCheck bool
	}{
		{expr: `(?ism)(UNCLASSIFIED|U)//(FOR\sOFFICIAL\sUSE\sONLY|FOUO)`, selective: true,
			admit:  []string{"doc U//FOUO end", "unclassified//for official use only"},
			reject: []string{"U/FOUO", "no marking here at all", "FOUO//U"}},
		{expr: ` (6011|5[1-5]\d{2}|4\d{3}|3\d{3}) \d{4} \d{4} \d{4}`, selective: true,
			admit:  []string{"card 4111 1111 1111 1111 ok"},
			reject: []string{"card 4111-1111-1111-1111", "price 19.99 EUR", "4111 1111 1111 1111"}},
		{expr: `(?i) (FREE XXX|dildo|masturbat|oral sex|tits|bondage|lolita|clitoris|cock suck|hardcore (teen|anal|sex|porn)|raw sex|((fuck|sex|porn|xxx) (movies|dvd))|((naked|nude) (celeb|lesbian)))\b`, selective: true,
			admit:  []string{"get FREE xxx now", " NUDE CELEB!"},
			reject: []string{"<a href=\"/item?id=42\">Blue shirt</a>", "free stuff"}},
		{expr: `(?i)(((URL|SRC|HREF|LOWSRC)[\s]*=)|(url[\s]*[\(]))[\s]*['"]*[\x09\x0a\x0b\x0c\x0d]*j[\x09\x0a\x0b\x0c\x0d]*a[\x09\x0a\x0b\x0c\x0d]*v[\x09\x0a\x0b\x0c\x0d]*a[\x09\x0a\x0b\x0c\x0d]*s[\x09\x0a\x0b\x0c\x0d]*c[\x09\x0a\x0b\x0c\x0d]*r[\x09\x0a\x0b\x0c\x0d]*i[\x09\x0a\x0b\x0c\x0d]*p[\x09\x0a\x0b\x0c\x0d]*t[\x09\x0a\x0b\x0c\x0d]*[\:]`, selective: true,
			admit:  []string{"<img src='jav\tascript:alert(1)'>"},
			reject: []string{strings.Repeat(`<a href="/item?id=42">Blue shirt</a> `, 20)}},
		// A run may not span a rune of unknown width: in non-ASCII input
		// "é" is two bytes, and \w does not follow it at once.
		{expr: `a.b`, admit: []string{"a\u00e9b", "axb"}, reject: []string{"ab"}},
		{expr: `(?i)kilo`, admit: []string{"KILO", "\u212Ailo"}},
		{expr: `\x{ff}\x{fe}abc`, latin1: true, selective: true,
			admit: []string{"\xff\xfeabc"}, reject: []string{"\u00ff\u00feabc", "abc"}},
		// Repeats: one copy is the start and the end, not twice.
		{expr: `(abc)+def`, admit: []string{"abcdef", "abcabcdef"}, reject: []string{"abdef"}},
		{expr: `x(abcd|ab)y`, admit: []string{"xaby", "xabcdy"}, reject: []string{"xay"}},
	}
	for _, tc := range tests {
		c := newPCRECase(t, tc.expr, tc.latin1)
		if tc.selective && c.ascii == nil {
			t.Errorf("%q: no required runs", tc.expr)
		}
		for _, s := range tc.admit {
			if !c.matches([]byte(s)) {
				t.Errorf("%q: test input %q does not match", tc.expr, s)
			}
			if !c.admits([]byte(s)) {
				t.Errorf("%q: %q rejected, but it matches", tc.expr, s)
			}
		}
		for _, s := range tc.reject {
			if c.matches([]byte(s)) {
				t.Errorf("%q: test input %q matches", tc.expr, s)
			}
			if tc.selective && c.admits([]byte(s)) {
				t.Errorf("%q: %q admitted", tc.expr, s)
			}
		}
	}
}

// TestRequiredRunsET checks every pcre of ET Open (with its disabled
// rules) on strings generated from the expression itself, with noise
// around them: when the expression matches, its runs must admit.
func TestRequiredRunsET(t *testing.T) {
	rs := etRules(t, true, 0)
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	n, withRuns := 0, 0
	for _, rule := range rs {
		for _, m := range rule.Matches {
			if m.Kind != rules.MatchPCRE || seen[m.Regexp] {
				continue
			}
			seen[m.Regexp] = true
			if _, err := regexp.Compile(m.Regexp); err != nil {
				continue
			}
			c := newPCRECase(t, m.Regexp, m.Latin1)
			if c.ascii != nil || c.any != nil {
				withRuns++
			}
			for range 6 {
				if b, ok := generate(m.Regexp, m.Latin1, r); ok {
					n++
					c.check(t, b)
				}
			}
		}
	}
	t.Logf("%d distinct pcres, %d with required runs, %d generated inputs checked", len(seen), withRuns, n)
	if len(seen) > 0 && n < len(seen) {
		t.Errorf("only %d inputs generated for %d expressions", n, len(seen))
	}
}

// generate is a random string the expression is likely to match (empty
// assertions are ignored, so it may not), with random bytes around it.
func generate(expr string, latin1 bool, r *rand.Rand) ([]byte, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, false
	}
	var rs []rune
	if !genRunes(re, latin1, r, &rs, 0) || len(rs) > 4096 {
		return nil, false
	}
	var b []byte
	noise := func() {
		for range r.IntN(6) {
			if r.IntN(4) == 0 {
				b = append(b, byte(r.IntN(256)))
			} else {
				b = append(b, byte(' '+r.IntN(95)))
			}
		}
	}
	noise()
	for _, c := range rs {
		if latin1 {
			if c > 0xff {
				return nil, false
			}
			b = append(b, byte(c))
		} else {
			b = utf8.AppendRune(b, c)
		}
	}
	noise()
	return b, true
}

func genRunes(re *syntax.Regexp, latin1 bool, r *rand.Rand, out *[]rune, depth int) bool {
	if depth > 100 {
		return false
	}
	pick := func(c rune) rune {
		if re.Flags&syntax.FoldCase == 0 {
			return c
		}
		orbit := []rune{c}
		for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
			orbit = append(orbit, f)
		}
		return orbit[r.IntN(len(orbit))]
	}
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			*out = append(*out, pick(c))
		}
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return false
		}
		j := 2 * r.IntN(len(re.Rune)/2)
		lo, hi := re.Rune[j], re.Rune[j+1]
		if latin1 && lo > 0xff {
			return false
		}
		if latin1 {
			hi = min(hi, 0xff)
		}
		hi = min(hi, lo+300)
		*out = append(*out, lo+rune(r.IntN(int(hi-lo)+1)))
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		c := rune(r.IntN(256))
		if !latin1 && r.IntN(3) == 0 {
			c = rune(0x100 + r.IntN(0x700))
		}
		if c == '\n' && re.Op == syntax.OpAnyCharNotNL {
			c = 'x'
		}
		*out = append(*out, c)
	case syntax.OpCapture:
		return genRunes(re.Sub[0], latin1, r, out, depth+1)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, 3
		switch re.Op {
		case syntax.OpPlus:
			lo = 1
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + 3
			}
		}
		for range lo + r.IntN(hi-lo+1) {
			if !genRunes(re.Sub[0], latin1, r, out, depth+1) {
				return false
			}
		}
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !genRunes(s, latin1, r, out, depth+1) {
				return false
			}
		}
	case syntax.OpAlternate:
		return genRunes(re.Sub[r.IntN(len(re.Sub))], latin1, r, out, depth+1)
	}
	return true
}

// FuzzRequiredRuns: for any expression and input, the required runs
// never reject what the regexp matches.
func FuzzRequiredRuns(f *testing.F) {
	f.Add(`(?i)(UNCLASSIFIED|U)//(FOR\sOFFICIAL|FOUO)`, []byte("x u//fouo"), false)
	f.Add(` (4\d{3}|3\d{3}) \d{4}`, []byte(" 4111 2222"), false)
	f.Add(`(?i)k[a-z]+s`, []byte("\u212Aabc\u017f"), false)
	f.Add(`\x{ff}\x{fe}(abc|de)+`, []byte("\xff\xfeabcde"), true)
	f.Add(`a.{2}b`, []byte("a\u00e9b"), false)
	f.Add(`(ab|cd)(ef)+g?h*`, []byte("zzcdefefh"), false)
	f.Fuzz(func(t *testing.T, expr string, input []byte, latin1 bool) {
		if len(expr) > 200 {
			return
		}
		if _, err := regexp.Compile(expr); err != nil {
			return
		}
		c := newPCRECase(t, expr, latin1)
		c.check(t, input)
		if b, ok := generate(expr, latin1, rand.New(rand.NewPCG(uint64(len(input)), 3))); ok {
			c.check(t, b)
		}
	})
}
