package rules

import (
	"fmt"
	"strconv"
	"strings"
)

// content reads content:[!]"text|hex bytes|text".
func (p *parser) content(name, value string) *Error {
	pat, neg, err := parseContent(value)
	if err != nil {
		return p.errf("%v", err)
	}
	buf := p.cur
	if name == "uricontent" {
		buf = BufHTTPURI
	}
	p.add(Match{Kind: MatchContent, Buffer: buf, Pattern: pat, Negated: neg})
	p.lastContent, p.lastMoved = len(p.matches)-1, false
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func parseContent(value string) (pat []byte, neg bool, err error) {
	v := strings.TrimSpace(value)
	if strings.HasPrefix(v, "!") {
		neg, v = true, strings.TrimSpace(v[1:])
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	} else if strings.IndexByte(v, '"') >= 0 {
		return nil, false, fmt.Errorf("unbalanced quotes in %s", value)
	}
	out := make([]byte, 0, len(v))
	hex := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if hex {
			switch {
			case c == '|':
				hex = false
			case c == ' ' || c == '\t':
			case isHex(c):
				if i+1 >= len(v) || !isHex(v[i+1]) {
					return nil, false, fmt.Errorf("odd hex digit at offset %d in %s: hex bytes are two digits", i, value)
				}
				out = append(out, hexVal(c)<<4|hexVal(v[i+1]))
				i++
			default:
				return nil, false, fmt.Errorf("%q at offset %d in %s is not a hex digit", c, i, value)
			}
			continue
		}
		switch c {
		case '|':
			hex = true
		case '\\':
			if i+1 >= len(v) {
				return nil, false, fmt.Errorf("%s ends in a lone \\", value)
			}
			i++
			switch v[i] {
			case '"', ';', '\\', ':', '|':
				out = append(out, v[i])
			default:
				return nil, false, fmt.Errorf("bad escape \\%c at offset %d in %s: only \\\" \\; \\: \\| \\\\", v[i], i-1, value)
			}
		case '"':
			return nil, false, fmt.Errorf("unescaped quote at offset %d in %s", i, value)
		default:
			out = append(out, c)
		}
	}
	if hex {
		return nil, false, fmt.Errorf("hex bytes not closed by | in %s", value)
	}
	if len(out) == 0 {
		return nil, false, fmt.Errorf("empty content")
	}
	return out, neg, nil
}

// modifier applies a content modifier to the content before it.
func (p *parser) modifier(name, value string, hasValue bool) *Error {
	if p.lastContent < 0 {
		return p.errf("no content before it")
	}
	m := &p.matches[p.lastContent]
	if m.Buffer != p.cur && !p.lastMoved && name != "fast_pattern" {
		return p.errf("the last content is in %s, not in the sticky buffer %s", m.Buffer, p.cur)
	}
	flagOnly := func() *Error {
		if hasValue {
			return p.errf("takes no value")
		}
		return nil
	}
	num := func() (int, *Error) {
		n, err := strconv.Atoi(value)
		if err != nil {
			if value != "" && (value[0] == '_' || 'a' <= value[0] && value[0] <= 'z' || 'A' <= value[0] && value[0] <= 'Z') {
				return 0, p.unsupported("byte_extract", "%s uses the variable %q: byte_extract is not supported", name, value)
			}
			return 0, p.errf("%q is not a number", value)
		}
		return n, nil
	}
	absolute := func() *Error {
		if m.HasDistance || m.HasWithin {
			return p.errf("cannot mix %s with distance/within on one content", name)
		}
		return nil
	}
	relative := func() *Error {
		if m.HasDepth || m.HasOffset || m.StartsWith {
			return p.errf("cannot mix %s with depth/offset/startswith on one content", name)
		}
		return nil
	}
	switch name {
	case "nocase":
		if err := flagOnly(); err != nil {
			return err
		}
		m.Nocase = true
	case "startswith":
		if err := flagOnly(); err != nil {
			return err
		}
		if err := absolute(); err != nil {
			return err
		}
		if m.HasDepth || m.HasOffset {
			return p.errf("cannot mix startswith with depth/offset")
		}
		m.StartsWith = true
	case "endswith":
		if err := flagOnly(); err != nil {
			return err
		}
		m.EndsWith = true
	case "depth":
		n, err := num()
		if err != nil {
			return err
		}
		if err := absolute(); err != nil {
			return err
		}
		if n < len(m.Pattern) {
			return p.errf("depth %d is shorter than the content (%d bytes)", n, len(m.Pattern))
		}
		m.Depth, m.HasDepth = n, true
	case "offset":
		n, err := num()
		if err != nil {
			return err
		}
		if err := absolute(); err != nil {
			return err
		}
		if n < 0 {
			return p.errf("negative offset %d", n)
		}
		m.Offset, m.HasOffset = n, true
	case "distance":
		n, err := num()
		if err != nil {
			return err
		}
		if err := relative(); err != nil {
			return err
		}
		m.Distance, m.HasDistance = n, true
	case "within":
		n, err := num()
		if err != nil {
			return err
		}
		if err := relative(); err != nil {
			return err
		}
		if n < len(m.Pattern) {
			return p.errf("within %d is shorter than the content (%d bytes)", n, len(m.Pattern))
		}
		m.Within, m.HasWithin = n, true
	case "fast_pattern":
		if p.fastPatterns > 0 {
			return p.errf("a second fast_pattern")
		}
		p.fastPatterns++
		m.FastPattern = true
		switch {
		case !hasValue:
		case value == "only":
			m.FastPatternOnly = true
		default:
			a, b, ok := strings.Cut(value, ",")
			ofs, err1 := strconv.Atoi(strings.TrimSpace(a))
			n, err2 := strconv.Atoi(strings.TrimSpace(b))
			if !ok || err1 != nil || err2 != nil || ofs < 0 || n <= 0 || ofs+n > len(m.Pattern) {
				return p.errf("%q: want only, or offset,length within the content's %d bytes", value, len(m.Pattern))
			}
			m.FastPatternOfs, m.FastPattLen = ofs, n
		}
		if m.Negated && (m.FastPatternOnly || m.FastPattLen > 0) {
			return p.errf("a negated content cannot be fast_pattern:only or a part")
		}
	}
	return nil
}

// pcre reads pcre:[!]"/expression/flags".
func (p *parser) pcre(value string) *Error {
	v := strings.TrimSpace(value)
	neg := false
	if strings.HasPrefix(v, "!") {
		neg, v = true, strings.TrimSpace(v[1:])
	}
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return p.errf("want a quoted \"/expression/flags\"")
	}
	v = v[1 : len(v)-1]
	if strings.HasPrefix(v, "!") {
		neg, v = true, v[1:]
	}
	end := strings.LastIndexByte(v, '/')
	if len(v) < 2 || v[0] != '/' || end == 0 {
		return p.errf("want /expression/flags")
	}
	m, err := translatePCRE(v[1:end], v[end+1:])
	if err != nil {
		e := p.errf("%v", err)
		if err.unsupported {
			e.Keyword = "pcre"
		}
		return e
	}
	m.Negated = neg
	if m.Buffer == BufPayload {
		m.Buffer = p.cur
	}
	p.add(m)
	return nil
}

// isdataat reads isdataat:[!]N[,relative][,rawbytes].
func (p *parser) isdataat(value string) *Error {
	parts := strings.Split(value, ",")
	m := Match{Kind: MatchIsDataAt, Buffer: p.cur, Int: IntMatch{Cmp: CmpGe}}
	n := strings.TrimSpace(parts[0])
	if strings.HasPrefix(n, "!") {
		m.Negated, n = true, strings.TrimSpace(n[1:])
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 0 {
		if n != "" && !('0' <= n[0] && n[0] <= '9') && n[0] != '-' {
			return p.unsupported("byte_extract", "isdataat uses the variable %q: byte_extract is not supported", n)
		}
		return p.errf("%q is not a position", n)
	}
	m.Int.Value = uint64(v)
	for _, f := range parts[1:] {
		switch strings.TrimSpace(f) {
		case "relative":
			m.Relative = true
		case "rawbytes":
		default:
			return p.errf("unknown setting %q: want relative or rawbytes", strings.TrimSpace(f))
		}
	}
	p.add(m)
	return nil
}

// byteNum reads a byte_test/byte_jump number: decimal, 0x hex or octal
// 0NNN; a name is a byte_extract variable, which is not supported.
func (p *parser) byteNum(what, s string, signed bool) (int64, *Error) {
	s = strings.TrimSpace(s)
	if signed {
		n, err := strconv.ParseInt(s, 0, 64)
		if err == nil {
			return n, nil
		}
	} else if n, err := strconv.ParseUint(s, 0, 64); err == nil {
		return int64(n), nil
	}
	if s != "" && (s[0] == '_' || 'a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return 0, p.unsupported("byte_extract", "%s is the variable %q: byte_extract is not supported", what, s)
	}
	return 0, p.errf("%s %q is not a number", what, s)
}

// byteFlag reads the flags byte_test and byte_jump share; ok is false for
// a flag that is not one of them.
func (p *parser) byteFlag(m *Match, f string) (bool, *Error) {
	switch f {
	case "relative":
		m.Relative = true
	case "big":
		m.Endian = BigEndian
	case "little":
		m.Endian = LittleEndian
	case "string":
		m.String = true
		if m.Base == 0 {
			m.Base = 10
		}
	case "hex":
		m.Base = 16
	case "dec":
		m.Base = 10
	case "oct":
		m.Base = 8
	case "dce":
		return true, p.unsupported(p.opt+" dce", "dce (DCE/RPC byte order) is not supported")
	default:
		if v, ok := strings.CutPrefix(f, "bitmask"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 0, 64)
			if err != nil || n == 0 {
				return true, p.errf("bitmask %q is not a non-zero number", strings.TrimSpace(v))
			}
			m.Bitmask = n
			return true, nil
		}
		return false, nil
	}
	return true, nil
}

func (p *parser) checkBytes(m *Match) *Error {
	if m.Base != 0 && !m.String {
		return p.errf("hex/dec/oct need string")
	}
	switch {
	case m.String && m.Bytes == 0:
		// Some rule sets read a decimal string of any length this way.
		return p.unsupported(p.opt+" 0 bytes", "0 bytes (a string number of any length) is not supported: a string number is 1-23 bytes")
	case m.String && m.Bytes > 23:
		return p.errf("%d bytes: a string number is 1-23 bytes", m.Bytes)
	case !m.String && (m.Bytes < 1 || m.Bytes > 8):
		return p.errf("%d bytes: a binary number is 1-8 bytes", m.Bytes)
	}
	return nil
}

// byteTest reads byte_test:bytes,[!]op,value,offset[,flags...].
func (p *parser) byteTest(value string) *Error {
	parts := strings.Split(value, ",")
	if len(parts) < 4 {
		return p.errf("want bytes,operator,value,offset[,flags]")
	}
	m := Match{Kind: MatchByteTest, Buffer: p.cur}
	n, err := p.byteNum("bytes", parts[0], false)
	if err != nil {
		return err
	}
	m.Bytes = int(n)
	op := strings.TrimSpace(parts[1])
	neg := false
	if len(op) > 1 && op[0] == '!' && op != "!=" {
		neg, op = true, op[1:]
	}
	cmps := map[string]Cmp{"<": CmpLt, ">": CmpGt, "=": CmpEq, "<=": CmpLe, ">=": CmpGe, "!": CmpNe, "!=": CmpNe, "&": CmpAnd, "^": CmpXor}
	c, ok := cmps[op]
	if !ok {
		return p.errf("operator %q: want <, >, =, <=, >=, !, &, ^ (optionally after !)", parts[1])
	}
	if neg {
		// Fold a negated comparison into its opposite; & and ^ keep
		// Negated.
		switch c {
		case CmpLt:
			c = CmpGe
		case CmpGt:
			c = CmpLe
		case CmpLe:
			c = CmpGt
		case CmpGe:
			c = CmpLt
		case CmpEq:
			c = CmpNe
		case CmpNe:
			c = CmpEq
		default:
			m.Negated = true
		}
	}
	m.Int.Cmp = c
	v, err := p.byteNum("value", parts[2], false)
	if err != nil {
		return err
	}
	m.Int.Value = uint64(v)
	off, err := p.byteNum("offset", parts[3], true)
	if err != nil {
		return err
	}
	m.ByteOffset = int(off)
	for _, f := range parts[4:] {
		f = strings.TrimSpace(f)
		ok, err := p.byteFlag(&m, f)
		if err != nil {
			return err
		}
		if !ok {
			return p.errf("unknown setting %q", f)
		}
	}
	if err := p.checkBytes(&m); err != nil {
		return err
	}
	p.add(m)
	return nil
}

// byteJump reads byte_jump:bytes,offset[,flags...].
func (p *parser) byteJump(value string) *Error {
	parts := strings.Split(value, ",")
	if len(parts) < 2 {
		return p.errf("want bytes,offset[,flags]")
	}
	m := Match{Kind: MatchByteJump, Buffer: p.cur, Multiplier: 1}
	n, err := p.byteNum("bytes", parts[0], false)
	if err != nil {
		return err
	}
	m.Bytes = int(n)
	off, err := p.byteNum("offset", parts[1], true)
	if err != nil {
		return err
	}
	m.ByteOffset = int(off)
	for _, f := range parts[2:] {
		f = strings.TrimSpace(f)
		ok, err := p.byteFlag(&m, f)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		switch {
		case f == "align":
			m.Align = true
		case f == "from_beginning":
			m.FromBeginning = true
		case f == "from_end":
			return p.unsupported("byte_jump from_end", "from_end is not supported")
		case strings.HasPrefix(f, "multiplier"):
			v, err := strconv.Atoi(strings.TrimSpace(f[len("multiplier"):]))
			if err != nil || v <= 0 {
				return p.errf("multiplier %q is not a positive number", f)
			}
			m.Multiplier = v
		case strings.HasPrefix(f, "post_offset"):
			v, err := strconv.Atoi(strings.TrimSpace(f[len("post_offset"):]))
			if err != nil {
				return p.errf("post_offset %q is not a number", f)
			}
			m.PostOffset = v
		default:
			return p.errf("unknown setting %q", f)
		}
	}
	if err := p.checkBytes(&m); err != nil {
		return err
	}
	p.add(m)
	return nil
}
