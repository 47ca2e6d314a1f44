package rules

import (
	"bytes"
	"fmt"
	"regexp/syntax"
	"strconv"
	"strings"
)

// pcreError is why a pcre option cannot be used; unsupported marks a valid
// PCRE that Go's RE2 cannot run (the rule's Problem then has the keyword
// "pcre").
type pcreError struct {
	msg         string
	unsupported bool
}

func (e *pcreError) Error() string { return e.msg }

func pcreBad(format string, args ...any) *pcreError {
	return &pcreError{msg: fmt.Sprintf(format, args...)}
}

func pcreUnsupported(format string, args ...any) *pcreError {
	return &pcreError{msg: fmt.Sprintf(format, args...), unsupported: true}
}

// pcreBuffers are pcre's buffer flags.
var pcreBuffers = map[byte]Buffer{
	'U': BufHTTPURI, 'I': BufHTTPURIRaw, 'P': BufHTTPRequestBody, 'Q': BufHTTPResponseBody,
	'H': BufHTTPHeader, 'D': BufHTTPHeaderRaw, 'M': BufHTTPMethod, 'C': BufHTTPCookie,
	'S': BufHTTPStatCode, 'Y': BufHTTPStatMsg, 'V': BufHTTPUserAgent, 'W': BufHTTPHost, 'Z': BufHTTPHostRaw,
}

// translatePCRE turns a PCRE expression and its flags into a Match whose
// Regexp is Go (RE2) syntax with the same meaning, or says which construct
// RE2 cannot do. PCRE matches bytes and Go's regexp UTF-8 text, so bytes
// above 0x7f are written as the runes \x{80}-\x{ff} and the Match is
// marked Latin1. A repeat over RE2's limit of 1000 is split into chained
// repeats of the same atom.
func translatePCRE(expr, flags string) (Match, *pcreError) {
	m := Match{Kind: MatchPCRE}
	var inline []byte
	anchored, extended, haveBuf, multiline, dollarEnd := false, false, false, false, false
	for i := 0; i < len(flags); i++ {
		f := flags[i]
		switch f {
		case 'i', 's', 'm':
			inline = append(inline, f)
			multiline = multiline || f == 'm'
		case 'E':
			dollarEnd = true
		case 'x':
			extended = true
		case 'G':
			inline = append(inline, 'U')
		case 'A':
			anchored = true
		case 'R':
			m.Relative = true
		case 'O', 'B':
			// O: Suricata's match limit override. B: Snort's rawbytes.
		default:
			b, ok := pcreBuffers[f]
			if !ok {
				return m, pcreBad("unknown pcre flag %q", f)
			}
			if haveBuf && m.Buffer != b {
				return m, pcreBad("two buffer flags in %q", flags)
			}
			m.Buffer, haveBuf = b, true
		}
	}
	t := translator{e: expr, extended: extended}
	// PCRE's "$" also matches before a final newline unless E or m says
	// otherwise; RE2 has no lookahead, but consuming that newline decides
	// the same. An inline (?m) keeps RE2's "$", which then agrees.
	t.dollarNewline = !multiline && !dollarEnd && !strings.Contains(expr, "(?m")
	body, err := t.body()
	if err != nil {
		return m, err
	}
	m.Latin1 = t.latin1
	var b strings.Builder
	if len(inline) > 0 {
		b.WriteString("(?")
		b.Write(inline)
		b.WriteString(")")
	}
	if anchored {
		b.WriteString(`\A(?:`)
		b.WriteString(body)
		b.WriteString(")")
	} else {
		b.WriteString(body)
	}
	m.Regexp = b.String()
	if _, perr := syntax.Parse(m.Regexp, syntax.Perl); perr != nil {
		return m, pcreUnsupported("pcre %q: Go's RE2 rejects it: %v", expr, perr)
	}
	return m, nil
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isPunct(c byte) bool {
	return '!' <= c && c <= '/' || ':' <= c && c <= '@' || '[' <= c && c <= '`' || '{' <= c && c <= '~'
}

// translator turns a PCRE expression into RE2 syntax.
type translator struct {
	e        string
	extended bool
	b        bytes.Buffer
	latin1   bool // a byte above 0x7f was written as a rune
	// dollarNewline writes "$" as "(?:\n?\z)", PCRE's default meaning.
	dollarNewline bool
}

// literal writes byte c so that RE2 matches exactly it.
func (t *translator) literal(c byte) {
	switch {
	case isAlnum(c):
		t.b.WriteByte(c)
	case isPunct(c):
		t.b.WriteByte('\\')
		t.b.WriteByte(c)
	default:
		t.char(int(c))
	}
}

// char writes the byte value c as an escape; above 0x7f as a rune, which
// makes the expression Latin1.
func (t *translator) char(c int) {
	if c > 0x7f {
		t.latin1 = true
		fmt.Fprintf(&t.b, `\x{%02x}`, c)
		return
	}
	fmt.Fprintf(&t.b, `\x%02x`, c)
}

func (t *translator) body() (string, *pcreError) {
	e, b := t.e, &t.b
	b.Grow(len(e) + 8)
	inClass := false
	classStart := 0
	prevQuant := false // the last thing written is a quantifier
	atom := -1         // where the last atom starts in b, -1 for none
	var groups []int   // where the open groups start in b
	for i := 0; i < len(e); i++ {
		c := e[i]
		if t.extended && !inClass {
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' {
				continue
			}
			if c == '#' {
				for i < len(e) && e[i] != '\n' {
					i++
				}
				continue
			}
		}
		if c == '\\' {
			if i+1 >= len(e) {
				return "", pcreBad("pcre ends in a lone backslash")
			}
			if !inClass {
				atom = b.Len()
			}
			n, err := t.escape(i+1, inClass)
			if err != nil {
				return "", err
			}
			if e[i+1] == 'Q' {
				atom = -1 // several literals, no single atom
			}
			i = n
			prevQuant = false
			continue
		}
		if inClass {
			switch {
			case c == ']' && i > classStart:
				inClass = false
				b.WriteByte(c)
			case c == '[' && i+1 < len(e) && e[i+1] == ':':
				end := strings.Index(e[i:], ":]")
				if end < 0 {
					return "", pcreBad("pcre: [: without :]")
				}
				b.WriteString(e[i : i+end+2])
				i += end + 1
			case c == '[':
				b.WriteString(`\[`)
			case c >= 0x80:
				t.char(int(c))
			default:
				b.WriteByte(c)
			}
			continue
		}
		switch c {
		case '[':
			inClass = true
			atom = b.Len()
			b.WriteByte('[')
			if i+1 < len(e) && e[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(e) && e[i+1] == ']' {
				b.WriteString(`\]`)
				i++
			}
			classStart = i + 1
			prevQuant = false
		case '(':
			start := b.Len()
			n, skip, err := t.group(i)
			if err != nil {
				return "", err
			}
			if !skip {
				groups = append(groups, start)
			}
			i = n
			prevQuant = false
			atom = -1
		case ')':
			if len(groups) == 0 {
				return "", pcreBad("pcre: ) without (")
			}
			atom = groups[len(groups)-1]
			groups = groups[:len(groups)-1]
			b.WriteByte(c)
			prevQuant = false
		case '|':
			b.WriteByte(c)
			atom, prevQuant = -1, false
		case '$':
			atom, prevQuant = -1, false
			if t.dollarNewline {
				b.WriteString(`(?:\n?\z)`)
			} else {
				b.WriteByte(c)
			}
		case '*', '+', '?':
			if prevQuant && c == '+' {
				return "", pcreUnsupported("pcre uses a possessive quantifier (%s), which Go's RE2 cannot match", e[max(0, i-1):i+1])
			}
			b.WriteByte(c)
			// After a quantifier, "?" makes it lazy and ends it.
			prevQuant = !(prevQuant && c == '?')
		case '{':
			end, lo, hi, ok := repeat(e, i)
			if !ok {
				atom = b.Len()
				b.WriteString(`\{`)
				prevQuant = false
				continue
			}
			if lo > 1000 || hi > 1000 {
				if max(lo, hi) > maxSplitRepeat {
					return "", pcreUnsupported("pcre repeats %s; Go's RE2 allows at most 1000, and splitting more than %d copies makes too large a program", e[i:end+1], maxSplitRepeat)
				}
				if atom < 0 || prevQuant {
					return "", pcreUnsupported("pcre repeats %s; Go's RE2 allows at most 1000", e[i:end+1])
				}
				t.splitRepeat(atom, lo, hi)
			} else {
				b.WriteString(e[i : end+1])
			}
			i = end
			prevQuant = true
		default:
			atom = b.Len()
			if c >= 0x80 {
				t.char(int(c))
			} else {
				b.WriteByte(c)
			}
			prevQuant = false
		}
	}
	if inClass {
		return "", pcreBad("pcre: [ without ]")
	}
	return b.String(), nil
}

// maxSplitRepeat bounds the copies splitRepeat writes: each is part of
// the compiled program.
const maxSplitRepeat = 4000

// splitRepeat rewrites atom{lo,hi} (hi -1: unbounded) with counts over
// 1000 as a chain of repeats of at most 1000 that match the same: lo
// mandatory copies, then hi-lo optional ones (or a star).
func (t *translator) splitRepeat(atom, lo, hi int) {
	g := "(?:" + string(t.b.Bytes()[atom:]) + ")"
	t.b.Truncate(atom)
	for n := lo; n > 0; {
		k := min(n, 1000)
		fmt.Fprintf(&t.b, "%s{%d}", g, k)
		n -= k
	}
	if hi < 0 {
		t.b.WriteString(g + "*")
		return
	}
	for n := hi - lo; n > 0; {
		k := min(n, 1000)
		fmt.Fprintf(&t.b, "%s{0,%d}", g, k)
		n -= k
	}
}

// repeat reads {n}, {n,} or {n,m} at e[i]; end is the index of "}".
func repeat(e string, i int) (end, lo, hi int, ok bool) {
	j := i + 1
	num := func() (int, bool) {
		s := j
		for j < len(e) && '0' <= e[j] && e[j] <= '9' {
			j++
		}
		if s == j || j-s > 5 {
			return 0, false
		}
		n, err := strconv.Atoi(e[s:j])
		return n, err == nil
	}
	lo, ok = num()
	if !ok {
		return 0, 0, 0, false
	}
	hi = lo
	if j < len(e) && e[j] == ',' {
		j++
		hi = -1
		if j < len(e) && e[j] != '}' {
			if hi, ok = num(); !ok {
				return 0, 0, 0, false
			}
		}
	}
	if j >= len(e) || e[j] != '}' || hi >= 0 && hi < lo {
		return 0, 0, 0, false
	}
	return j, lo, hi, true
}

// group handles "(" at e[i], refusing what RE2 lacks; it returns the
// index of the last byte it consumed, and skip when it wrote no group
// (a comment).
func (t *translator) group(i int) (int, bool, *pcreError) {
	e, b := t.e, &t.b
	if i+1 >= len(e) || e[i+1] != '?' {
		b.WriteByte('(')
		return i, false, nil
	}
	rest := e[i+2:]
	un := func(what string) (int, bool, *pcreError) {
		return 0, false, pcreUnsupported("pcre uses %s, which Go's RE2 cannot match", what)
	}
	switch {
	case strings.HasPrefix(rest, "="):
		return un("lookahead (?=...)")
	case strings.HasPrefix(rest, "!"):
		return un("negative lookahead (?!...)")
	case strings.HasPrefix(rest, "<="):
		return un("lookbehind (?<=...)")
	case strings.HasPrefix(rest, "<!"):
		return un("negative lookbehind (?<!...)")
	case strings.HasPrefix(rest, ">"):
		return un("an atomic group (?>...)")
	case strings.HasPrefix(rest, "|"):
		return un("a branch reset group (?|...)")
	case strings.HasPrefix(rest, "("):
		return un("a conditional group (?(...)...)")
	case strings.HasPrefix(rest, "P="):
		return un("a named backreference (?P=name)")
	case strings.HasPrefix(rest, "P>"), strings.HasPrefix(rest, "&"):
		return un("a named recursion (?P>name)")
	case strings.HasPrefix(rest, "R"), len(rest) > 0 && ('0' <= rest[0] && rest[0] <= '9'),
		len(rest) > 1 && (rest[0] == '+' || rest[0] == '-') && '0' <= rest[1] && rest[1] <= '9':
		return un("recursion (?R)")
	case strings.HasPrefix(rest, "#"):
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return 0, false, pcreBad("pcre: (?# comment not closed")
		}
		return i + 2 + end, true, nil
	case strings.HasPrefix(rest, "'"):
		end := strings.IndexByte(rest[1:], '\'')
		if end < 0 {
			return 0, false, pcreBad("pcre: (?' group name not closed")
		}
		b.WriteString("(?P<")
		b.WriteString(rest[1 : 1+end])
		b.WriteString(">")
		return i + 2 + 1 + end, false, nil
	case strings.HasPrefix(rest, "P<"), strings.HasPrefix(rest, "<"), strings.HasPrefix(rest, ":"):
		b.WriteString("(?")
		return i + 1, false, nil
	}
	// Inline flags (?imsU-imsU) or (?flags:...).
	for j := 0; j < len(rest) && rest[j] != ')' && rest[j] != ':'; j++ {
		switch rest[j] {
		case 'i', 'm', 's', 'U', '-':
		case 'x':
			return un("the inline flag (?x)")
		default:
			return 0, false, pcreUnsupported("pcre uses the inline flag %q, which Go's RE2 lacks", rest[j])
		}
	}
	b.WriteString("(?")
	return i + 1, false, nil
}

// octal reports whether the digits at e[i] are an octal escape, not a
// backreference: as in PCRE, two or three octal digits when the
// expression has fewer capturing groups than their decimal value.
func (t *translator) octal(i int) bool {
	e := t.e
	j := i
	for j < len(e) && j < i+3 && '0' <= e[j] && e[j] <= '9' {
		j++
	}
	if j-i < 2 || strings.ContainsAny(e[i:j], "89") {
		return false
	}
	n, _ := strconv.Atoi(e[i:j])
	groups := strings.Count(e, "(") - strings.Count(e, "(?") - strings.Count(e, `\(`)
	return groups < n
}

// escape translates the escape whose letter is e[i]; it returns the index
// of the last byte it consumed.
func (t *translator) escape(i int, inClass bool) (int, *pcreError) {
	e, b := t.e, &t.b
	d := e[i]
	switch {
	case d >= 0x80:
		t.char(int(d))
	case '1' <= d && d <= '9' && !inClass && !t.octal(i):
		return 0, pcreUnsupported("pcre uses the backreference \\%c, which Go's RE2 cannot match", d)
	case d == '0' || '1' <= d && d <= '7':
		// Octal: up to three digits.
		j := i
		for j < len(e) && j < i+3 && '0' <= e[j] && e[j] <= '7' {
			j++
		}
		v, _ := strconv.ParseUint(e[i:j], 8, 16)
		if v > 0xff {
			return 0, pcreBad("pcre: octal \\%s is over 0xff", e[i:j])
		}
		t.char(int(v))
		return j - 1, nil
	case d == 'x':
		var v uint64
		j := i + 1
		if j < len(e) && e[j] == '{' {
			end := strings.IndexByte(e[j:], '}')
			if end < 0 {
				return 0, pcreBad("pcre: \\x{ not closed")
			}
			var err error
			v, err = strconv.ParseUint(e[j+1:j+end], 16, 32)
			if err != nil || v > 0xff {
				return 0, pcreBad("pcre: \\x{%s} is not a byte", e[j+1:j+end])
			}
			j += end + 1
		} else {
			s := j
			for j < len(e) && j < s+2 && isHex(e[j]) {
				j++
			}
			if s < j {
				v, _ = strconv.ParseUint(e[s:j], 16, 8)
			}
		}
		t.char(int(v))
		return j - 1, nil
	case d == 'k' || d == 'g':
		return 0, pcreUnsupported("pcre uses the backreference \\%c, which Go's RE2 cannot match", d)
	case d == 'Z':
		return 0, pcreUnsupported("pcre uses \\Z (end or before a final newline), which Go's RE2 lacks")
	case d == 'G' || d == 'K' || d == 'R' || d == 'X' || d == 'C' || d == 'N':
		return 0, pcreUnsupported("pcre uses \\%c, which Go's RE2 lacks", d)
	case d == 'e':
		b.WriteString(`\x1b`)
	case d == 'c':
		if i+1 >= len(e) {
			return 0, pcreBad("pcre: \\c at the end")
		}
		c := e[i+1]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		t.char(int(c ^ 0x40))
		return i + 1, nil
	case d == 'h' || d == 'v':
		set := `\t\x20`
		if d == 'v' {
			set = `\n\x0b\f\r`
		}
		if inClass {
			b.WriteString(set)
		} else {
			b.WriteString("[" + set + "]")
		}
	case d == 'H' || d == 'V':
		if inClass {
			return 0, pcreUnsupported("pcre uses \\%c inside a class, which Go's RE2 lacks", d)
		}
		if d == 'H' {
			b.WriteString(`[^\t\x20]`)
		} else {
			b.WriteString(`[^\n\x0b\f\r]`)
		}
	case d == 'b' && inClass:
		b.WriteString(`\x08`)
	case d == 'Q':
		end := strings.Index(e[i+1:], `\E`)
		lit := e[i+1:]
		next := len(e) - 1
		if end >= 0 {
			lit = e[i+1 : i+1+end]
			next = i + 1 + end + 1
		}
		for k := 0; k < len(lit); k++ {
			t.literal(lit[k])
		}
		return next, nil
	case d == 'E':
		// A stray \E ends nothing.
	case isAlnum(d):
		// \d \w \s \b \A \z \n \t ... mean the same in RE2; the parse
		// after translation rejects the rest.
		b.WriteByte('\\')
		b.WriteByte(d)
	default:
		t.literal(d)
	}
	return i, nil
}
