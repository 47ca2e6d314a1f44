// Package tagexpr is the tag expression language of Group.spec.match: it parses
// expressions such as app == "shop" && tier in ("web","api") and evaluates
// them against a workload's tags without allocating.
package tagexpr

import (
	"fmt"
	"slices"
	"strings"
)

// Expr is a parsed tag expression.
type Expr interface {
	// Eval reports whether tags satisfy the expression. It does not allocate.
	Eval(tags map[string]string) bool
	// String returns the canonical form, which Parse accepts and maps back to
	// the same canonical form.
	String() string
	// Keys returns the tag keys the expression reads, sorted and deduplicated.
	Keys() []string
}

// SyntaxError says where and why an expression does not parse.
type SyntaxError struct {
	Column int // 1-based, counted in characters (runes)
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

// node is what every expression node implements; appendString writes the
// canonical form and keys collects the tag keys.
type node interface {
	Expr
	appendString(b *strings.Builder)
	collectKeys(dst []string) []string
	// prec is the binding strength used to decide on parentheses when printing.
	prec() int
}

const (
	precOr = iota + 1
	precAnd
	precUnary
)

type orExpr struct{ terms []node }
type andExpr struct{ terms []node }
type notExpr struct{ x node }

// cmpExpr is key == value (neg false) or key != value (neg true). A missing
// tag is unequal to every value, so key != "v" holds when key is absent.
type cmpExpr struct {
	key, value string
	neg        bool
}

// inExpr is key in (values) or key not in (values); a missing tag is in no list.
type inExpr struct {
	key    string
	values []string
	neg    bool
}

type hasExpr struct{ key string }
type allExpr struct{}

func (e *orExpr) Eval(tags map[string]string) bool {
	for _, t := range e.terms {
		if t.Eval(tags) {
			return true
		}
	}
	return false
}

func (e *andExpr) Eval(tags map[string]string) bool {
	for _, t := range e.terms {
		if !t.Eval(tags) {
			return false
		}
	}
	return true
}

func (e *notExpr) Eval(tags map[string]string) bool { return !e.x.Eval(tags) }

func (e *cmpExpr) Eval(tags map[string]string) bool {
	v, ok := tags[e.key]
	return (ok && v == e.value) != e.neg
}

func (e *inExpr) Eval(tags map[string]string) bool {
	v, ok := tags[e.key]
	found := false
	if ok {
		for _, x := range e.values {
			if x == v {
				found = true
				break
			}
		}
	}
	return found != e.neg
}

func (e *hasExpr) Eval(tags map[string]string) bool {
	_, ok := tags[e.key]
	return ok
}

func (allExpr) Eval(map[string]string) bool { return true }

func (e *orExpr) prec() int  { return precOr }
func (e *andExpr) prec() int { return precAnd }
func (e *notExpr) prec() int { return precUnary }
func (e *cmpExpr) prec() int { return precUnary }
func (e *inExpr) prec() int  { return precUnary }
func (e *hasExpr) prec() int { return precUnary }
func (allExpr) prec() int    { return precUnary }

func str(n node) string {
	var b strings.Builder
	n.appendString(&b)
	return b.String()
}

func (e *orExpr) String() string  { return str(e) }
func (e *andExpr) String() string { return str(e) }
func (e *notExpr) String() string { return str(e) }
func (e *cmpExpr) String() string { return str(e) }
func (e *inExpr) String() string  { return str(e) }
func (e *hasExpr) String() string { return str(e) }
func (e allExpr) String() string  { return str(e) }

// appendOperand prints x, in parentheses when it binds more loosely than min.
func appendOperand(b *strings.Builder, x node, min int) {
	if x.prec() < min {
		b.WriteByte('(')
		x.appendString(b)
		b.WriteByte(')')
		return
	}
	x.appendString(b)
}

func (e *orExpr) appendString(b *strings.Builder) {
	for i, t := range e.terms {
		if i > 0 {
			b.WriteString(" || ")
		}
		// An or nested in an or only exists when the user wrote parentheses;
		// keep them so that the canonical form reparses to the same tree.
		appendOperand(b, t, precAnd)
	}
}

func (e *andExpr) appendString(b *strings.Builder) {
	for i, t := range e.terms {
		if i > 0 {
			b.WriteString(" && ")
		}
		appendOperand(b, t, precUnary)
	}
}

func (e *notExpr) appendString(b *strings.Builder) {
	b.WriteByte('!')
	appendOperand(b, e.x, precUnary)
}

func (e *cmpExpr) appendString(b *strings.Builder) {
	b.WriteString(e.key)
	if e.neg {
		b.WriteString(" != ")
	} else {
		b.WriteString(" == ")
	}
	appendQuoted(b, e.value)
}

func (e *inExpr) appendString(b *strings.Builder) {
	b.WriteString(e.key)
	if e.neg {
		b.WriteString(" not in (")
	} else {
		b.WriteString(" in (")
	}
	for i, v := range e.values {
		if i > 0 {
			b.WriteString(", ")
		}
		appendQuoted(b, v)
	}
	b.WriteByte(')')
}

func (e *hasExpr) appendString(b *strings.Builder) {
	b.WriteString("has(")
	b.WriteString(e.key)
	b.WriteByte(')')
}

func (allExpr) appendString(b *strings.Builder) { b.WriteString("all()") }

// appendQuoted writes s double-quoted, escaping only '"' and '\\': those are
// the only escapes the language has, every other byte stands for itself.
func appendQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func (e *orExpr) collectKeys(dst []string) []string {
	for _, t := range e.terms {
		dst = t.collectKeys(dst)
	}
	return dst
}

func (e *andExpr) collectKeys(dst []string) []string {
	for _, t := range e.terms {
		dst = t.collectKeys(dst)
	}
	return dst
}

func (e *notExpr) collectKeys(dst []string) []string { return e.x.collectKeys(dst) }
func (e *cmpExpr) collectKeys(dst []string) []string { return append(dst, e.key) }
func (e *inExpr) collectKeys(dst []string) []string  { return append(dst, e.key) }
func (e *hasExpr) collectKeys(dst []string) []string { return append(dst, e.key) }
func (allExpr) collectKeys(dst []string) []string    { return dst }

func keys(n node) []string {
	k := n.collectKeys(nil)
	slices.Sort(k)
	return slices.Compact(k)
}

func (e *orExpr) Keys() []string  { return keys(e) }
func (e *andExpr) Keys() []string { return keys(e) }
func (e *notExpr) Keys() []string { return keys(e) }
func (e *cmpExpr) Keys() []string { return keys(e) }
func (e *inExpr) Keys() []string  { return keys(e) }
func (e *hasExpr) Keys() []string { return keys(e) }
func (e allExpr) Keys() []string  { return nil }
