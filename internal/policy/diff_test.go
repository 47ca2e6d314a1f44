package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// lcsLen is the textbook dynamic program, the reference for lineDiff.
func lcsLen(a, b []string) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}

func TestLineDiffIsMinimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "c", "d"}
	gen := func() []string {
		out := make([]string, r.IntN(12))
		for i := range out {
			out[i] = words[r.IntN(len(words))]
		}
		return out
	}
	for n := 0; n < 3000; n++ {
		a, b := gen(), gen()
		edits := lineDiff(a, b)
		var gotA, gotB []string
		same := 0
		for _, e := range edits {
			if e.op != '+' {
				gotA = append(gotA, e.line)
			}
			if e.op != '-' {
				gotB = append(gotB, e.line)
			}
			if e.op == ' ' {
				same++
			}
		}
		if !slices.Equal(gotA, a) || !slices.Equal(gotB, b) {
			t.Fatalf("lineDiff(%q, %q) does not reproduce its inputs: %v", a, b, edits)
		}
		if want := lcsLen(a, b); same != want {
			t.Fatalf("lineDiff(%q, %q) keeps %d lines, the LCS has %d", a, b, same, want)
		}
	}
}

func TestLineDiffGivesUpGracefully(t *testing.T) {
	var a, b []string
	for i := range 3000 {
		a = append(a, "a"+strings.Repeat("x", i))
		b = append(b, "b"+strings.Repeat("x", i))
	}
	b[0] = a[0] // a common head is still kept
	edits := lineDiff(a, b)
	var gotA, gotB []string
	for _, e := range edits {
		if e.op != '+' {
			gotA = append(gotA, e.line)
		}
		if e.op != '-' {
			gotB = append(gotB, e.line)
		}
	}
	if !slices.Equal(gotA, a) || !slices.Equal(gotB, b) || edits[0].op != ' ' {
		t.Fatal("fallback diff does not reproduce its inputs")
	}
}

func TestUnifiedDiff(t *testing.T) {
	var a, b []string
	for i := 1; i <= 20; i++ {
		a = append(a, "l"+string(rune('a'+i)))
	}
	b = slices.Clone(a)
	b[1] = "changed"
	b = slices.Insert(b, 15, "new")
	got := unifiedDiff(strings.Join(a, "\n")+"\n", strings.Join(b, "\n")+"\n")
	want := `@@ -1,5 +1,5 @@
  lb
- lc
+ changed
  ld
  le
  lf
@@ -13,6 +13,7 @@
  ln
  lo
  lp
+ new
  lq
  lr
  ls
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestDiffSets(t *testing.T) {
	old := NewSet()
	old.Put(&Group{Header: Header{Metadata: Metadata{Name: "web"}}, Spec: GroupSpec{Match: `tier == "web"`}})
	old.Put(&Group{Header: Header{Metadata: Metadata{Name: "gone"}}, Spec: GroupSpec{IPs: []string{"10.0.0.1"}}})
	old.Put(&Service{Header: Header{Metadata: Metadata{Name: "same"}}, Spec: ServiceSpec{Ports: []string{"tcp/1"}}})
	old.RuleIDs["p/r"] = 5

	new := old.Clone()
	new.Groups["web"].Spec.Match = `tier == "frontend"`
	new.Delete(KindGroup, "gone")
	new.Put(&Group{Header: Header{Metadata: Metadata{Name: "added"}}, Spec: GroupSpec{Match: "all()"}})
	new.Default.Spec.Action = ActionDrop
	new.RuleIDs["p/r"] = 6 // ids are not policy text

	got := DiffSets(old, new)
	var ops []string
	for _, c := range got {
		ops = append(ops, c.Op+" "+string(c.Kind)+" "+c.Name)
	}
	want := []string{"created Group added", "deleted Group gone", "updated Group web", "updated DefaultRule default"}
	if !slices.Equal(ops, want) {
		t.Fatalf("changes = %q, want %q", ops, want)
	}
	if d := got[2].Diff; d != "@@ -3,4 +3,4 @@\n  metadata:\n    name: web\n  spec:\n-   match: tier == \"web\"\n+   match: tier == \"frontend\"\n" {
		t.Errorf("update diff:\n%s", d)
	}
	if !strings.HasPrefix(got[0].Diff, "+ apiVersion: bulkhead.io/v1\n+ kind: Group\n") {
		t.Errorf("create diff:\n%s", got[0].Diff)
	}
	if !strings.HasPrefix(got[1].Diff, "- apiVersion: bulkhead.io/v1\n") {
		t.Errorf("delete diff:\n%s", got[1].Diff)
	}
	if len(DiffSets(old, old.Clone())) != 0 || len(DiffSets(nil, nil)) != 0 {
		t.Error("equal sets differ")
	}
	if n := len(DiffSets(nil, old)); n != 4 {
		t.Errorf("DiffSets(nil, old) has %d changes, want 4", n)
	}
}

func BenchmarkLineDiffLargePolicy(b *testing.B) {
	var a []string
	for i := range 5000 {
		a = append(a, "line "+strings.Repeat("x", i%7))
	}
	c := slices.Clone(a)
	c[100], c[2500], c[4900] = "x", "y", "z"
	b.ReportAllocs()
	for b.Loop() {
		lineDiff(a, c)
	}
}
