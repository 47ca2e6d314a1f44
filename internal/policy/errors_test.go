package policy

import (
	"errors"
	"testing"
)

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{Source: Source{File: "policy.yaml", Index: 3}, Kind: KindPolicy, Name: "shop", Field: "spec.rules[1].sources[0]", Line: 12, Column: 7, Reason: `unknown group "web2"`},
			`policy.yaml:12:7: document 3 (Policy "shop"): spec.rules[1].sources[0]: unknown group "web2"`},
		{FieldError{Source: Source{File: "policy.yaml", Index: 3}, Kind: KindPolicy, Name: "shop", Field: "spec", Reason: "x"},
			`policy.yaml: document 3 (Policy "shop"): spec: x`},
		{FieldError{Source: Source{File: "policy.yaml", Index: 3}, Line: 12, Reason: "x"},
			`policy.yaml:12: document 3: x`},
		{FieldError{Source: Source{Index: 3}, Kind: KindPolicy, Name: "shop", Field: "spec", Reason: "x"},
			`document 3 (Policy "shop"): spec: x`},
		{FieldError{Source: Source{Index: 3}, Kind: KindPolicy, Name: "shop", Field: "spec", Line: 4, Column: 2, Reason: "x"},
			`document 3 (Policy "shop"), line 4:2: spec: x`},
		{FieldError{Kind: KindGroup, Name: "web", Field: "spec.ips[0]", Reason: "x"},
			`Group "web": spec.ips[0]: x`},
		{FieldError{Kind: KindGroup, Field: "metadata.name", Line: 2, Reason: "x"},
			`Group, line 2: metadata.name: x`},
		{FieldError{Line: 2, Column: 1, Reason: "x"}, `line 2:1: x`},
		{FieldError{Reason: "x"}, `x`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestErrorList(t *testing.T) {
	var l ErrorList
	if l.Err() != nil {
		t.Fatal("empty ErrorList.Err() != nil")
	}
	l = ErrorList{
		{Source: Source{File: "b.yaml", Index: 1}, Line: 1, Reason: "4"},
		{Source: Source{File: "a.yaml", Index: 2}, Line: 1, Reason: "3"},
		{Source: Source{File: "a.yaml", Index: 1}, Line: 9, Reason: "2"},
		{Source: Source{File: "a.yaml", Index: 1}, Line: 3, Column: 5, Reason: "1b"},
		{Source: Source{File: "a.yaml", Index: 1}, Line: 3, Column: 1, Reason: "1a"},
	}
	err := l.Err()
	want := "a.yaml:3:1: document 1: 1a\na.yaml:3:5: document 1: 1b\na.yaml:9: document 1: 2\na.yaml:1: document 2: 3\nb.yaml:1: document 1: 4"
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Reason != "1a" {
		t.Errorf("errors.As(ErrorList, *FieldError) = %v", fe)
	}
}

func TestPositionsLookup(t *testing.T) {
	p := &Positions{ByPath: map[string]Position{
		"":                         {1, 1},
		"spec":                     {5, 3},
		"spec.rules[1]":            {9, 7},
		`spec.tags["a[b]"]`:        {4, 4},
		"spec.rules[1].sources[0]": {10, 17},
	}}
	tests := []struct {
		path string
		want Position
	}{
		{"spec.rules[1].sources[0]", Position{10, 17}},
		{"spec.rules[1].action", Position{9, 7}},
		{"spec.rules[1].sources[3]", Position{9, 7}},
		{"spec.rules[2].name", Position{5, 3}},
		{`spec.tags["a[b]"]`, Position{4, 4}},
		{`spec.tags["x[y]"]`, Position{5, 3}},
		{"metadata.name", Position{1, 1}},
	}
	for _, tt := range tests {
		if got, _ := p.Lookup(tt.path); got != tt.want {
			t.Errorf("Lookup(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
	var none *Positions
	if _, ok := none.Lookup("spec"); ok {
		t.Error("nil Positions found something")
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"rules", "category", "priority", "appliedTo"}
	tests := []struct{ in, want string }{
		{"rulez", `; did you mean "rules"?`},
		{"Rules", `; did you mean "rules"?`},
		{"applied_to", `; did you mean "appliedTo"?`},
		{"priorty", `; did you mean "priority"?`},
		{"frobnicate", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, names); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
