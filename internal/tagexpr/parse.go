package tagexpr

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds nesting of parentheses and "!" so that hostile input
// cannot make the recursive parser (or the printer) run away.
const maxDepth = 100

// Parse parses a tag expression. Errors are *SyntaxError.
//
//	expr    := and ('||' and)*
//	and     := unary ('&&' unary)*
//	unary   := '!' unary | primary
//	primary := '(' expr ')' | KEY ('=='|'!=') STRING
//	         | KEY ['not'] 'in' '(' STRING (',' STRING)* ')'
//	         | 'has' '(' KEY ')' | 'all' '(' ')'
func Parse(src string) (Expr, error) {
	p := &parser{src: src}
	p.advance()
	if p.tok.kind == tokEOF {
		return nil, p.errAt(p.tok, "empty expression")
	}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.err != nil {
		return nil, p.err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errAt(p.tok, "expected \"&&\" or \"||\", got "+p.tok.describe())
	}
	return n, nil
}

// ValidKey reports whether k can be written as a tag key in an expression:
// [A-Za-z_][A-Za-z0-9_.\-/]*.
func ValidKey(k string) bool {
	if k == "" || !isKeyStart(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if !isKeyByte(k[i]) {
			return false
		}
	}
	return true
}

func isKeyStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isKeyByte(c byte) bool {
	return isKeyStart(c) || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '/'
}

type tokKind int

const (
	tokEOF  tokKind = iota
	tokWord         // a key or a keyword
	tokString
	tokLParen
	tokRParen
	tokComma
	tokEq
	tokNe
	tokNot
	tokAnd
	tokOr
)

type token struct {
	kind tokKind
	off  int    // byte offset in src
	text string // word text, or the unescaped string value
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of expression"
	case tokWord:
		return t.text
	case tokString:
		var b strings.Builder
		appendQuoted(&b, t.text)
		return "string " + b.String()
	}
	return fmt.Sprintf("%q", tokText[t.kind])
}

var tokText = map[tokKind]string{
	tokLParen: "(", tokRParen: ")", tokComma: ",", tokEq: "==", tokNe: "!=",
	tokNot: "!", tokAnd: "&&", tokOr: "||",
}

type parser struct {
	src string
	off int   // next byte to lex
	tok token // current token
	err *SyntaxError
}

func (p *parser) column(off int) int { return utf8.RuneCountInString(p.src[:off]) + 1 }

func (p *parser) errAt(t token, msg string) *SyntaxError {
	if p.err != nil { // a lexing error is the first thing wrong
		return p.err
	}
	return &SyntaxError{Column: p.column(t.off), Msg: msg}
}

// advance lexes the next token into p.tok. A lexing error is kept in p.err
// and surfaces as an EOF token, so the parser stops at the first problem.
func (p *parser) advance() {
	for p.off < len(p.src) && (p.src[p.off] == ' ' || p.src[p.off] == '\t' || p.src[p.off] == '\n' || p.src[p.off] == '\r') {
		p.off++
	}
	start := p.off
	if p.err != nil || start >= len(p.src) {
		p.tok = token{kind: tokEOF, off: len(p.src)}
		return
	}
	two := func(second byte, kind tokKind, alone tokKind, msg string) {
		if p.off+1 < len(p.src) && p.src[p.off+1] == second {
			p.off += 2
			p.tok = token{kind: kind, off: start}
			return
		}
		if alone != tokEOF {
			p.off++
			p.tok = token{kind: alone, off: start}
			return
		}
		p.fail(start, msg)
	}
	switch c := p.src[start]; {
	case c == '(':
		p.off++
		p.tok = token{kind: tokLParen, off: start}
	case c == ')':
		p.off++
		p.tok = token{kind: tokRParen, off: start}
	case c == ',':
		p.off++
		p.tok = token{kind: tokComma, off: start}
	case c == '=':
		two('=', tokEq, tokEOF, `expected "==", got "="`)
	case c == '!':
		two('=', tokNe, tokNot, "")
	case c == '&':
		two('&', tokAnd, tokEOF, `expected "&&", got "&"`)
	case c == '|':
		two('|', tokOr, tokEOF, `expected "||", got "|"`)
	case c == '"' || c == '\'':
		p.lexString(c)
	case isKeyByte(c):
		for p.off < len(p.src) && isKeyByte(p.src[p.off]) {
			p.off++
		}
		p.tok = token{kind: tokWord, off: start, text: p.src[start:p.off]}
	default:
		r, _ := utf8.DecodeRuneInString(p.src[start:])
		p.fail(start, fmt.Sprintf("unexpected character %q", r))
	}
}

func (p *parser) fail(off int, msg string) {
	p.err = &SyntaxError{Column: p.column(off), Msg: msg}
	p.tok = token{kind: tokEOF, off: off}
}

func (p *parser) lexString(quote byte) {
	start := p.off
	p.off++
	var b strings.Builder
	for p.off < len(p.src) {
		c := p.src[p.off]
		switch {
		case c == quote:
			p.off++
			p.tok = token{kind: tokString, off: start, text: b.String()}
			return
		case c == '\\':
			if p.off+1 >= len(p.src) {
				p.fail(start, "unterminated string")
				return
			}
			e := p.src[p.off+1]
			if e != '"' && e != '\\' && e != '\'' {
				r, _ := utf8.DecodeRuneInString(p.src[p.off+1:])
				p.fail(p.off, fmt.Sprintf(`unknown escape "\%c" in string; only \", \' and \\ are allowed`, r))
				return
			}
			b.WriteByte(e)
			p.off += 2
		default:
			b.WriteByte(c)
			p.off++
		}
	}
	p.fail(start, "unterminated string")
}

func (p *parser) or(depth int) (node, error) {
	first, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokOr {
		return first, nil
	}
	terms := flatten(nil, first, false)
	for p.tok.kind == tokOr {
		p.advance()
		t, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		terms = flatten(terms, t, false)
	}
	return &orExpr{terms: terms}, nil
}

func (p *parser) and(depth int) (node, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokAnd {
		return first, nil
	}
	terms := flatten(nil, first, true)
	for p.tok.kind == tokAnd {
		p.advance()
		t, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		terms = flatten(terms, t, true)
	}
	return &andExpr{terms: terms}, nil
}

// flatten appends t to terms, or its terms if it is the same operator in
// parentheses: (a && b) && c is a && b && c, and the canonical form carries
// no parentheses that change nothing.
func flatten(terms []node, t node, and bool) []node {
	switch x := t.(type) {
	case *andExpr:
		if and {
			return append(terms, x.terms...)
		}
	case *orExpr:
		if !and {
			return append(terms, x.terms...)
		}
	}
	return append(terms, t)
}

func (p *parser) unary(depth int) (node, error) {
	if depth >= maxDepth {
		return nil, p.errAt(p.tok, "expression nested too deeply")
	}
	if p.tok.kind == tokNot {
		p.advance()
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &notExpr{x: x}, nil
	}
	return p.primary(depth)
}

func (p *parser) primary(depth int) (node, error) {
	t := p.tok
	switch t.kind {
	case tokLParen:
		p.advance()
		x, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, p.errAt(p.tok, fmt.Sprintf("expected \")\" to close \"(\" at column %d, got %s", p.column(t.off), p.tok.describe()))
		}
		p.advance()
		return x, nil
	case tokWord:
	case tokEOF:
		return nil, p.errAt(t, "unexpected end of expression; expected a tag key, \"!\", \"(\", has(KEY) or all()")
	default:
		return nil, p.errAt(t, "expected a tag key, \"!\", \"(\", has(KEY) or all(), got "+t.describe())
	}
	p.advance()
	if (t.text == "has" || t.text == "all") && p.tok.kind == tokLParen {
		return p.call(t)
	}
	if !ValidKey(t.text) {
		return nil, p.errAt(t, fmt.Sprintf("bad tag key %q: a key starts with a letter or \"_\"", t.text))
	}
	key := t.text
	switch op := p.tok; {
	case op.kind == tokEq || op.kind == tokNe:
		p.advance()
		v, err := p.str(`after "` + tokText[op.kind] + `"`)
		if err != nil {
			return nil, err
		}
		return &cmpExpr{key: key, value: v, neg: op.kind == tokNe}, nil
	case op.kind == tokWord && op.text == "in":
		p.advance()
		return p.list(key, false)
	case op.kind == tokWord && op.text == "not":
		p.advance()
		if p.tok.kind != tokWord || p.tok.text != "in" {
			return nil, p.errAt(p.tok, `expected "in" after "not"`)
		}
		p.advance()
		return p.list(key, true)
	default:
		return nil, p.errAt(op, fmt.Sprintf("expected \"==\", \"!=\", \"in\" or \"not in\" after tag key %q, got %s", key, op.describe()))
	}
}

// str reads a STRING token; where says what it follows, for the message.
func (p *parser) str(where string) (string, error) {
	t := p.tok
	switch t.kind {
	case tokString:
		p.advance()
		return t.text, nil
	case tokWord:
		return "", p.errAt(t, fmt.Sprintf("expected a quoted string %s, got %s (write \"%s\")", where, t.text, t.text))
	}
	return "", p.errAt(t, fmt.Sprintf("expected a quoted string %s, got %s", where, t.describe()))
}

func (p *parser) list(key string, neg bool) (node, error) {
	kw := `"in"`
	if neg {
		kw = `"not in"`
	}
	if p.tok.kind != tokLParen {
		return nil, p.errAt(p.tok, "expected \"(\" after "+kw)
	}
	p.advance()
	var values []string
	for {
		where := "in the list"
		if len(values) == 0 {
			where = "after " + kw[:len(kw)-1] + ` ("`
		}
		v, err := p.str(where)
		if err != nil {
			return nil, err
		}
		values = append(values, v)
		switch p.tok.kind {
		case tokComma:
			p.advance()
			continue
		case tokRParen:
			p.advance()
			return &inExpr{key: key, values: values, neg: neg}, nil
		}
		return nil, p.errAt(p.tok, "expected \",\" or \")\" in the list, got "+p.tok.describe())
	}
}

// call parses has(KEY) and all() once the name and "(" are seen.
func (p *parser) call(name token) (node, error) {
	p.advance() // (
	if name.text == "all" {
		if p.tok.kind != tokRParen {
			return nil, p.errAt(p.tok, "expected \")\" after \"all(\": all() takes no argument")
		}
		p.advance()
		return allExpr{}, nil
	}
	k := p.tok
	if k.kind != tokWord || !ValidKey(k.text) {
		return nil, p.errAt(k, "expected a tag key in has(), got "+k.describe())
	}
	p.advance()
	if p.tok.kind != tokRParen {
		return nil, p.errAt(p.tok, "expected \")\" after has("+k.text+", got "+p.tok.describe())
	}
	p.advance()
	return &hasExpr{key: k.text}, nil
}
