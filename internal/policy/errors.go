package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Source says where a document came from.
type Source struct {
	File  string // as given to Decode; empty when the text had no file
	Index int    // 1-based document number in the file; 0 when not from a stream
	Line  int    // line where the object starts; 0 when unknown
	// At holds where each field of the document was written, so that errors
	// found after decoding (an unknown group, a bad CIDR) still name a line
	// and column. Nil when the object did not come from text. A pointer keeps
	// Source comparable.
	At *Positions `json:"-"`
}

// Position is a line and column in a file, both 1-based.
type Position struct{ Line, Column int }

// Positions maps field paths of one document ("spec.rules[1].sources[0]")
// to where their values were written.
type Positions struct {
	ByPath map[string]Position
}

// Lookup returns the position of path, or of its nearest enclosing field
// that was written (a missing "spec.rules[1].action" is reported where
// "spec.rules[1]" is).
func (p *Positions) Lookup(path string) (Position, bool) {
	if p == nil {
		return Position{}, false
	}
	for {
		if pos, ok := p.ByPath[path]; ok {
			return pos, true
		}
		if path == "" {
			return Position{}, false
		}
		path = parentPath(path)
	}
}

// parentPath strips the last element of a field path: "a.b[2]" -> "a.b",
// "a.b" -> "a", `a["x.y"]` -> "a".
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			// A quoted map key may itself hold "["; find its opening quote.
			if j := strings.LastIndex(path, `["`); j >= 0 && strings.HasSuffix(path, `"]`) {
				i = j
			}
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// FieldError is one problem in one object, located as precisely as known.
type FieldError struct {
	Source Source
	Kind   Kind   // empty when the document did not say
	Name   string // empty when the document did not say
	Field  string // path such as "spec.rules[1].sources[0]"; empty for the whole document
	Line   int    // 0 when unknown
	Column int    // 0 when unknown
	Reason string
}

// Error formats the error as
//
//	policy.yaml:12:7: document 3 (Policy "shop"): spec.rules[1].sources[0]: unknown group "web2"
//
// leaving out whatever is unknown. Without a file the line follows the
// object: document 3 (Policy "shop"), line 12:7: spec...
func (e *FieldError) Error() string {
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
	}
	if e.Source.File != "" {
		b.WriteString(e.Source.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
	}
	obj := ""
	if e.Kind != "" {
		obj = string(e.Kind)
		if e.Name != "" {
			obj += fmt.Sprintf(" %q", e.Name)
		}
	}
	switch {
	case e.Source.Index > 0:
		sep()
		fmt.Fprintf(&b, "document %d", e.Source.Index)
		if obj != "" {
			b.WriteString(" (" + obj + ")")
		}
	case obj != "":
		sep()
		b.WriteString(obj)
	}
	if e.Source.File == "" && e.Line > 0 {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "line %d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if e.Field != "" {
		sep()
		b.WriteString(e.Field)
	}
	sep()
	b.WriteString(e.Reason)
	return b.String()
}

// ErrorList is every problem found in a call; as an error it prints one
// line per problem.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the *FieldError entries.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Err returns the list as an error, sorted, or nil when it is empty. Return
// l.Err() rather than l so that an empty list is a nil error.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	l.Sort()
	return l
}

// Sort orders the list by file, document, line and column; errors at the
// same place keep their order.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Source.File != b.Source.File {
			return a.Source.File < b.Source.File
		}
		if a.Source.Index != b.Source.Index {
			return a.Source.Index < b.Source.Index
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}
