package dnssnoop

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestMatcherAgreesWithEval runs the FQDN cases of internal/eval's tests
// (eval_test.go, "wildcard ..." and "exact name ...") against the matcher.
func TestMatcherAgreesWithEval(t *testing.T) {
	m, err := NewMatcher([][]string{
		{"*.example.com"},  // 0
		{"repo.internal"},  // 1
		{"*.corp.example"}, // 2
		{"*"},              // 3
		{"Mixed.Case.TEST."},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want []int
	}{
		{"api.example.com", []int{0, 3}},
		{"a.b.example.com", []int{0, 3}},
		{"example.com", []int{3}},         // a wildcard is not its apex
		{"API.Example.COM.", []int{0, 3}}, // case and root dot
		{"example.org", []int{3}},
		{"b.example.com.evil", []int{3}},
		{"xexample.com", []int{3}}, // a suffix only at a label boundary
		{"repo.internal", []int{1, 3}},
		{"x.repo.internal", []int{3}}, // an exact name only
		{"portal.corp.example", []int{2, 3}},
		{"mixed.case.test", []int{3, 4}},
		{"", nil},
	}
	for _, tt := range tests {
		for id := range m.Groups() {
			if got, want := m.Matches(id, tt.name), slices.Contains(tt.want, id); got != want {
				t.Errorf("%q in group %d: %v, want %v", tt.name, id, got, want)
			}
		}
	}
}

func TestMatcherOverlaps(t *testing.T) {
	m, err := NewMatcher([][]string{{"*.example.com"}, {"*.b.example.com", "exact.example.com"}, {"a.b.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	got := m.AppendIDs(nil, "a.b.example.com")
	slices.Sort(got)
	if want := []int{0, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("a.b.example.com -> %v, want %v", got, want)
	}
	got = m.AppendIDs(nil, "exact.example.com")
	slices.Sort(got)
	if want := []int{0, 1}; !slices.Equal(got, want) {
		t.Errorf("exact.example.com -> %v, want %v", got, want)
	}
	buf := make([]int, 0, 8)
	if n := testing.AllocsPerRun(1000, func() { buf = m.AppendIDs(buf[:0], "x.y.b.example.com") }); n != 0 {
		t.Errorf("AppendIDs allocates %v times", n)
	}
}

func TestMatcherErrors(t *testing.T) {
	for _, p := range []string{"", ".", "a..b", "a.*.b", "**.x", "*x.y", "a b.c", string(make([]byte, 64)) + ".x"} {
		if _, err := NewMatcher([][]string{{"ok.test"}, {p}}); err == nil {
			t.Errorf("pattern %q accepted", p)
		}
	}
	_, err := NewMatcher([][]string{{"ok.test", "a..b"}})
	if err == nil || err.Error() != `dnssnoop: pattern group 0, pattern 1 "a..b": empty label` {
		t.Errorf("error %v", err)
	}
}

func TestMemberships(t *testing.T) {
	c := newCache(t, CacheConfig{Grace: time.Second})
	c.Add(parsed(t, response(t, 0, "www.example.test.", cname("www.example.test.", 30, "edge.cdn.test."), a("edge.cdn.test.", 60, "192.0.2.10"))), t0, nil)
	c.Add(parsed(t, response(t, 0, "img.other.test.", a("img.other.test.", 100, "192.0.2.10"))), t0, nil)
	m, err := NewMatcher([][]string{{"*.example.test"}, {"*.cdn.test", "img.other.test"}, {"nothing.test"}})
	if err != nil {
		t.Fatal(err)
	}
	var s Scratch
	got := m.Memberships(c, netip.MustParseAddr("192.0.2.10"), t0, &s, nil)
	slices.SortFunc(got, func(a, b Membership) int { return a.ID - b.ID })
	want := []Membership{{0, t0.Add(31 * time.Second)}, {1, t0.Add(101 * time.Second)}}
	if !slices.Equal(got, want) {
		t.Errorf("memberships %v, want %v", got, want)
	}
	// After www.example.test's 31s, only group 1 is left.
	if got := m.Memberships(c, netip.MustParseAddr("192.0.2.10"), t0.Add(40*time.Second), &s, nil); len(got) != 1 || got[0].ID != 1 {
		t.Errorf("later memberships %v", got)
	}
	dst := make([]Membership, 0, 4)
	ip := netip.MustParseAddr("192.0.2.10")
	if n := testing.AllocsPerRun(1000, func() { dst = m.Memberships(c, ip, t0, &s, dst[:0]) }); n != 0 {
		t.Errorf("Memberships allocates %v times", n)
	}
}

func TestNameAgrees(t *testing.T) {
	names := []string{"www.example.test", "edge.cdn.test."}
	tests := []struct {
		seen string
		want bool
	}{
		{"www.example.test", true},
		{"WWW.Example.Test.", true},
		{"edge.cdn.test", true},
		{"www.example.test:8443", true},
		{" www.example.test ", true},
		{"evil.test", false},
		{"example.test", false},
		{"", false},
		{"192.0.2.10", false},
		{"192.0.2.10:443", false},
		{"[2001:db8::1]:443", false},
		{"2001:db8::1", false},
		{"[www.example.test]:443", true},
	}
	for _, tt := range tests {
		if got := NameAgrees(names, tt.seen); got != tt.want {
			t.Errorf("NameAgrees(%q) = %v, want %v", tt.seen, got, tt.want)
		}
		bs := []Binding{{Name: "www.example.test"}, {Name: "edge.cdn.test"}}
		if got := BindingsAgree(bs, tt.seen); got != tt.want {
			t.Errorf("BindingsAgree(%q) = %v, want %v", tt.seen, got, tt.want)
		}
	}
	if NameAgrees(nil, "www.example.test") {
		t.Error("no names agreed")
	}
}
