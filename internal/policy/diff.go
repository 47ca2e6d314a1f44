package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Change is one object that differs between two sets.
type Change struct {
	Kind Kind
	Name string
	Op   string // "created", "updated" or "deleted"
	// Diff compares the YAML of the object: lines prefixed "+ " (added),
	// "- " (removed) or "  " (unchanged context), in hunks headed
	// "@@ -l,n +l,n @@" when an update changes only part of the object.
	Diff string
}

// Operations of a Change.
const (
	OpCreated = "created"
	OpUpdated = "updated"
	OpDeleted = "deleted"
)

// diffContext is how many unchanged lines are shown around a change.
const diffContext = 3

// DiffSets lists the objects that are new, changed or gone from old to new,
// by kind in Kinds order and then by name. Rule ids are not compared. A nil
// set is an empty one.
func DiffSets(old, new *Set) []Change {
	if old == nil {
		old = &Set{}
	}
	if new == nil {
		new = &Set{}
	}
	var out []Change
	for _, kind := range Kinds {
		before := encodedByName(old.Objects(kind))
		after := encodedByName(new.Objects(kind))
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range before {
				if !yield(n) {
					return
				}
			}
			for n := range after {
				if _, both := before[n]; !both && !yield(n) {
					return
				}
			}
		})
		for _, name := range names {
			a, inOld := before[name]
			b, inNew := after[name]
			switch {
			case !inOld:
				out = append(out, Change{Kind: kind, Name: name, Op: OpCreated, Diff: prefixLines("+ ", b)})
			case !inNew:
				out = append(out, Change{Kind: kind, Name: name, Op: OpDeleted, Diff: prefixLines("- ", a)})
			case a != b:
				out = append(out, Change{Kind: kind, Name: name, Op: OpUpdated, Diff: unifiedDiff(a, b)})
			}
		}
	}
	return out
}

func encodedByName(objs []Object) map[string]string {
	m := make(map[string]string, len(objs))
	for _, o := range objs {
		b, err := Encode(o)
		if err != nil {
			// Encoding only fails on a type Encode does not know, which
			// types.go does not have; show the error rather than hide it.
			b = []byte("# " + err.Error() + "\n")
		}
		m[o.GetHeader().Metadata.Name] = string(b)
	}
	return m
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func prefixLines(prefix, s string) string {
	var b strings.Builder
	for _, l := range splitLines(s) {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

// edit is one line of a line diff.
type edit struct {
	op   byte // ' ', '-', '+'
	line string
}

// lineDiff returns a shortest edit script turning a into b (Myers' greedy
// algorithm), after taking off the common head and tail.
func lineDiff(a, b []string) []edit {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	var out []edit
	for _, l := range a[:head] {
		out = append(out, edit{' ', l})
	}
	out = append(out, myers(a[head:len(a)-tail], b[head:len(b)-tail])...)
	for _, l := range a[len(a)-tail:] {
		out = append(out, edit{' ', l})
	}
	return out
}

// maxEditDistance bounds the work of myers; past it the middle is shown as
// all removed then all added, which is correct, just not minimal.
const maxEditDistance = 2000

func myers(a, b []string) []edit {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil
	}
	// v[k] is the furthest x reached on diagonal k (= x - y); trace keeps a
	// copy of v after each step d for walking back.
	offset := n + m
	v := make([]int, 2*offset+2)
	var trace [][]int
	found := -1
	for d := 0; d <= n+m && d <= maxEditDistance; d++ {
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || k != d && v[offset+k-1] < v[offset+k+1] {
				x = v[offset+k+1] // down: insert from b
			} else {
				x = v[offset+k-1] + 1 // right: delete from a
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[offset+k] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
		trace = append(trace, slices.Clone(v[offset-d:offset+d+1]))
		if found >= 0 {
			break
		}
	}
	if found < 0 {
		var out []edit
		for _, l := range a {
			out = append(out, edit{'-', l})
		}
		for _, l := range b {
			out = append(out, edit{'+', l})
		}
		return out
	}
	// Walk back from (n, m): at each step d, the frontier of step d-1 says
	// which diagonal we came from; the snake before it is unchanged lines.
	var rev []edit
	x, y := n, m
	for d := found; d > 0; d-- {
		prev := trace[d-1] // v after step d-1, indexed by k + (d-1)
		k := x - y
		pk := k - 1
		if k == -d || k != d && prev[k-1+d-1] < prev[k+1+d-1] {
			pk = k + 1
		}
		px := prev[pk+d-1]
		py := px - pk
		for x > px && y > py {
			x, y = x-1, y-1
			rev = append(rev, edit{' ', a[x]})
		}
		if pk == k+1 {
			rev = append(rev, edit{'+', b[py]})
		} else {
			rev = append(rev, edit{'-', a[px]})
		}
		x, y = px, py
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		rev = append(rev, edit{' ', a[x]})
	}
	slices.Reverse(rev)
	return rev
}

// unifiedDiff renders the line diff of a and b in hunks with diffContext
// lines of context.
func unifiedDiff(a, b string) string {
	edits := lineDiff(splitLines(a), splitLines(b))
	var out strings.Builder
	i := 0
	for i < len(edits) {
		if edits[i].op == ' ' {
			i++
			continue
		}
		// A hunk runs from diffContext lines before this change to
		// diffContext lines after the last change that is at most
		// 2*diffContext unchanged lines from the next.
		start := max(0, i-diffContext)
		end := i
		for end < len(edits) {
			if edits[end].op != ' ' {
				end++
				continue
			}
			run := end
			for run < len(edits) && edits[run].op == ' ' {
				run++
			}
			if run == len(edits) || run-end > 2*diffContext {
				end = min(end+diffContext, len(edits))
				break
			}
			end = run
		}
		aLine, bLine := 1, 1
		for _, e := range edits[:start] {
			if e.op != '+' {
				aLine++
			}
			if e.op != '-' {
				bLine++
			}
		}
		aCount, bCount := 0, 0
		for _, e := range edits[start:end] {
			if e.op != '+' {
				aCount++
			}
			if e.op != '-' {
				bCount++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", aLine, aCount, bLine, bCount)
		for _, e := range edits[start:end] {
			out.WriteString(string(e.op) + " " + e.line + "\n")
		}
		i = end
	}
	return out.String()
}
