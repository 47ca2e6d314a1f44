package ids

import (
	"testing"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// m is a content with modifiers applied by the functions given.
func m(s string, mods ...func(*rules.Match)) rules.Match {
	x := content(s)
	for _, f := range mods {
		f(&x)
	}
	return x
}

func nocase(x *rules.Match)     { x.Nocase = true }
func negated(x *rules.Match)    { x.Negated = true }
func startswith(x *rules.Match) { x.StartsWith = true }
func endswith(x *rules.Match)   { x.EndsWith = true }
func offset(n int) func(*rules.Match) {
	return func(x *rules.Match) { x.Offset, x.HasOffset = n, true }
}
func depth(n int) func(*rules.Match) {
	return func(x *rules.Match) { x.Depth, x.HasDepth = n, true }
}
func distance(n int) func(*rules.Match) {
	return func(x *rules.Match) { x.Distance, x.HasDistance = n, true }
}
func within(n int) func(*rules.Match) {
	return func(x *rules.Match) { x.Within, x.HasWithin = n, true }
}

func pcre(re string, relative bool) rules.Match {
	return rules.Match{Kind: rules.MatchPCRE, Regexp: re, Relative: relative}
}

func TestMatchModifiers(t *testing.T) {
	tests := []struct {
		name string
		ms   []rules.Match
		buf  string
		want bool
	}{
		{"content", []rules.Match{m("evil")}, "an evil thing", true},
		{"content absent", []rules.Match{m("evil")}, "a good thing", false},
		{"case sensitive", []rules.Match{m("EVIL")}, "an evil thing", false},
		{"nocase", []rules.Match{m("EVIL", nocase)}, "an eViL thing", true},
		{"nocase absent", []rules.Match{m("EVIL", nocase)}, "an evl thing", false},
		{"hex bytes", []rules.Match{m("\x00\x01\xff")}, "ab\x00\x01\xffcd", true},
		{"negated absent", []rules.Match{m("evil"), m("safe", negated)}, "an evil thing", true},
		{"negated present", []rules.Match{m("evil"), m("safe", negated)}, "a safe evil thing", false},
		{"depth inside", []rules.Match{m("GET ", depth(4))}, "GET /x", true},
		{"depth outside", []rules.Match{m("GET ", depth(4))}, " GET /x", false},
		{"offset inside", []rules.Match{m("abc", offset(2))}, "xxabc", true},
		{"offset outside", []rules.Match{m("abc", offset(2))}, "xabcx", false},
		{"offset+depth inside", []rules.Match{m("abc", offset(2), depth(4))}, "xxxabcxx", true},
		{"offset+depth outside", []rules.Match{m("abc", offset(2), depth(4))}, "xxxxabcx", false},
		{"distance inside", []rules.Match{m("abc"), m("def", distance(2))}, "abcxxdef", true},
		{"distance too close", []rules.Match{m("abc"), m("def", distance(2))}, "abcxdef", false},
		{"negative distance", []rules.Match{m("def"), m("abc", distance(-6))}, "abcdef", true},
		{"within inside", []rules.Match{m("abc"), m("def", within(5))}, "abcxxdef", true},
		{"within outside", []rules.Match{m("abc"), m("def", within(4))}, "abcxxdef", false},
		{"distance+within", []rules.Match{m("abc"), m("def", distance(1), within(4))}, "abcxdef", true},
		{"distance+within outside", []rules.Match{m("abc"), m("def", distance(1), within(4))}, "abcxxxdef", false},
		{"startswith", []rules.Match{m("GET", startswith)}, "GET /", true},
		{"startswith not at start", []rules.Match{m("GET", startswith)}, " GET /", false},
		{"endswith", []rules.Match{m(".php", endswith)}, "/a.php", true},
		{"endswith not at end", []rules.Match{m(".php", endswith)}, "/a.php?x", false},
		{"endswith second occurrence", []rules.Match{m(".php", endswith)}, "/a.php/b.php", true},
		{"negated relative absent", []rules.Match{m("user="), m("admin", negated, within(8))}, "user=guest", true},
		{"negated relative present", []rules.Match{m("user="), m("admin", negated, within(8))}, "user=admin", false},
		{"pcre", []rules.Match{pcre(`(?i)select\s+.*from`, false)}, "x SELECT a FROM b", true},
		{"pcre absent", []rules.Match{pcre(`select\s+.*from`, false)}, "x SELECT a FROM b", false},
		{"pcre relative", []rules.Match{m("id="), pcre(`^[0-9]+'`, true)}, "a?id=12' or", true},
		{"pcre relative absent", []rules.Match{m("id="), pcre(`^[0-9]+'`, true)}, "a?id=x12'", false},
		{"pcre negated", []rules.Match{m("id="), {Kind: rules.MatchPCRE, Regexp: `^[0-9]+$`, Relative: true, Negated: true}}, "id=12x", true},
		{"isdataat", []rules.Match{m("ab"), {Kind: rules.MatchIsDataAt, Relative: true, Int: rules.IntMatch{Value: 3}}}, "abcdef", true},
		{"isdataat all the rest", []rules.Match{m("ab"), {Kind: rules.MatchIsDataAt, Relative: true, Int: rules.IntMatch{Value: 4}}}, "abcdef", true},
		{"isdataat none", []rules.Match{m("ab"), {Kind: rules.MatchIsDataAt, Relative: true, Int: rules.IntMatch{Value: 5}}}, "abcdef", false},
		{"isdataat negated", []rules.Match{m("ab"), {Kind: rules.MatchIsDataAt, Relative: true, Negated: true, Int: rules.IntMatch{Value: 5}}}, "abcdef", true},
		{"isdataat negated fails", []rules.Match{m("ab"), {Kind: rules.MatchIsDataAt, Relative: true, Negated: true, Int: rules.IntMatch{Value: 4}}}, "abcdef", false},
		{"isdataat absolute", []rules.Match{{Kind: rules.MatchIsDataAt, Int: rules.IntMatch{Value: 5}}}, "abcdef", true},
		{"isdataat absolute none", []rules.Match{{Kind: rules.MatchIsDataAt, Int: rules.IntMatch{Value: 6}}}, "abcdef", false},
		{"bsize", []rules.Match{m("a"), {Kind: rules.MatchBsize, Int: rules.IntMatch{Cmp: rules.CmpGt, Value: 3}}}, "abcd", true},
		{"bsize fails", []rules.Match{m("a"), {Kind: rules.MatchBsize, Int: rules.IntMatch{Cmp: rules.CmpGt, Value: 4}}}, "abcd", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := compileRule(anyRule(1, rules.ActionAlert, rules.ProtoTCP, tc.ms...))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, got := matchAll(c, []byte(tc.buf), 0, -1, nil, nil); got != tc.want {
				t.Errorf("match on %q = %v, want %v", tc.buf, got, tc.want)
			}
		})
	}
}

// A relative content is retried after the next occurrence of the content
// before it, as Suricata does: the first "a=" is followed by no "1", the
// second is.
func TestMatchBacktracks(t *testing.T) {
	tests := []struct {
		ms   []rules.Match
		buf  string
		want bool
	}{
		{[]rules.Match{m("a="), m("1", within(1))}, "a=0&a=1", true},
		{[]rules.Match{m("a="), m("1", within(1))}, "a=0&a=2", false},
		// Three levels: the middle one must be retried too.
		{[]rules.Match{m("x"), m("y", within(1)), m("z", within(1))}, "xy.xyq.xyz", true},
		{[]rules.Match{m("x"), m("y", within(1)), m("z", within(1))}, "xy.xyq.xy", false},
		// A relative pcre after a content.
		{[]rules.Match{m("cmd="), pcre(`^rm `, true)}, "cmd=ls&cmd=rm -rf", true},
	}
	for _, tc := range tests {
		c, _, err := compileRule(anyRule(1, rules.ActionAlert, rules.ProtoTCP, tc.ms...))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, got := matchAll(c, []byte(tc.buf), 0, -1, nil, nil); got != tc.want {
			t.Errorf("%q: match = %v, want %v", tc.buf, got, tc.want)
		}
	}
}

func TestByteTestAndJump(t *testing.T) {
	bt := func(bytes, off int, cmp rules.Cmp, v uint64, mods ...func(*rules.Match)) rules.Match {
		x := rules.Match{Kind: rules.MatchByteTest, Bytes: bytes, ByteOffset: off, Int: rules.IntMatch{Cmp: cmp, Value: v}}
		for _, f := range mods {
			f(&x)
		}
		return x
	}
	rel := func(x *rules.Match) { x.Relative = true }
	str := func(x *rules.Match) { x.String, x.Base = true, 10 }
	le := func(x *rules.Match) { x.Endian = rules.LittleEndian }
	tests := []struct {
		name string
		ms   []rules.Match
		buf  string
		want bool
	}{
		{"be eq", []rules.Match{bt(2, 0, rules.CmpEq, 0x0102)}, "\x01\x02", true},
		{"be ne", []rules.Match{bt(2, 0, rules.CmpEq, 0x0201)}, "\x01\x02", false},
		{"le eq", []rules.Match{bt(2, 0, rules.CmpEq, 0x0201, le)}, "\x01\x02", true},
		{"gt", []rules.Match{bt(1, 1, rules.CmpGt, 100)}, "\x00\xff", true},
		{"gt fails", []rules.Match{bt(1, 1, rules.CmpGt, 100)}, "\x00\x10", false},
		{"and", []rules.Match{bt(1, 0, rules.CmpAnd, 0x80)}, "\x81", true},
		{"and fails", []rules.Match{bt(1, 0, rules.CmpAnd, 0x80)}, "\x01", false},
		{"string", []rules.Match{bt(4, 0, rules.CmpGt, 1000, str)}, "4096 bytes", true},
		{"string smaller", []rules.Match{bt(4, 0, rules.CmpGt, 1000, str)}, "0096 bytes", false},
		{"relative", []rules.Match{m("len="), bt(3, 0, rules.CmpEq, 512, rel, str)}, "x len=512", true},
		{"out of buffer", []rules.Match{bt(4, 2, rules.CmpEq, 0)}, "\x00\x00\x00\x00", false},
		{"bitmask", []rules.Match{bt(1, 0, rules.CmpEq, 3, func(x *rules.Match) { x.Bitmask = 0x30 })}, "\x3f", true},
		{
			// Length-prefixed field: jump over it, then the marker.
			"jump", []rules.Match{
				{Kind: rules.MatchByteJump, Bytes: 1, ByteOffset: 0},
				m("MARK", within(4)),
			}, "\x03abcMARK", true,
		},
		{
			"jump lands elsewhere", []rules.Match{
				{Kind: rules.MatchByteJump, Bytes: 1, ByteOffset: 0},
				m("MARK", within(4)),
			}, "\x05abcMARK", false,
		},
		{
			"jump beyond buffer", []rules.Match{{Kind: rules.MatchByteJump, Bytes: 1}}, "\x09ab", false,
		},
		{
			"jump multiplier and post_offset", []rules.Match{
				{Kind: rules.MatchByteJump, Bytes: 1, Multiplier: 2, PostOffset: -1},
				m("Z", within(1)),
			}, "\x02abcZ", true,
		},
		{
			"jump from_beginning", []rules.Match{
				m("xx"),
				{Kind: rules.MatchByteJump, Bytes: 1, ByteOffset: 0, Relative: true, FromBeginning: true},
				m("Q", within(1)),
			}, "xx\x04.Q", true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := compileRule(anyRule(1, rules.ActionAlert, rules.ProtoTCP, tc.ms...))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, got := matchAll(c, []byte(tc.buf), 0, -1, nil, nil); got != tc.want {
				t.Errorf("match on %q = %v, want %v", tc.buf, got, tc.want)
			}
		})
	}
}

func TestPrefilter(t *testing.T) {
	pats := [][]byte{[]byte("he"), []byte("She"), []byte("his"), []byte("HERS"), []byte("he")}
	pf := newPrefilter(pats, []int32{0, 1, 2, 3, 4})
	tests := []struct {
		in   string
		want []int32
	}{
		{"ushers", []int32{0, 1, 3, 4}},
		{"USHERS", []int32{0, 1, 3, 4}},
		{"xhisx", []int32{2}},
		{"nothing", nil},
		{"h", nil},
	}
	for _, tc := range tests {
		var cs candSet
		cs.reset(5)
		pf.scan([]byte(tc.in), &cs)
		sortInt32(cs.list)
		if len(cs.list) != len(tc.want) {
			t.Errorf("%q: candidates %v, want %v", tc.in, cs.list, tc.want)
			continue
		}
		for j := range tc.want {
			if cs.list[j] != tc.want[j] {
				t.Errorf("%q: candidates %v, want %v", tc.in, cs.list, tc.want)
			}
		}
	}
}

// The automaton's dense rows and sparse states must agree with a naive
// search on many patterns (more states than the dense rows).
func TestPrefilterManyPatterns(t *testing.T) {
	var pats [][]byte
	var idx []int32
	for n := 0; n < 3000; n++ {
		p := []byte{byte('a' + n%26), byte('a' + n/26%26), byte('0' + n%10), byte('a' + n/260%26)}
		pats = append(pats, p)
		idx = append(idx, int32(n))
	}
	pf := newPrefilter(pats, idx)
	if len(pf.dense) != denseStates {
		t.Fatalf("dense rows %d, want %d", len(pf.dense), denseStates)
	}
	in := []byte("zzqa0aXbB1cC xyz az9b kk0a " + string(pats[2999]) + string(pats[1234]))
	var cs candSet
	cs.reset(len(pats))
	pf.scan(in, &cs)
	got := map[int32]bool{}
	for _, r := range cs.list {
		got[r] = true
	}
	folded := fold(in)
	for n, p := range pats {
		want := false
		for j := 0; j+len(p) <= len(folded); j++ {
			if string(folded[j:j+len(p)]) == string(fold(p)) {
				want = true
			}
		}
		if got[int32(n)] != want {
			t.Errorf("pattern %q: candidate %v, want %v", p, got[int32(n)], want)
		}
	}
}

func TestRegexpFactors(t *testing.T) {
	tests := []struct {
		re   string
		want []string
	}{
		{`(?i)select\s+.*from`, []string{"SELECT"}}, // folded by the prefilter
		{`/000(2(042[1-5]|1401)|6F071)-0000-C000`, []string{"-0000-C000"}},
		{`^(abc|defg)x?`, []string{"abc", "defg"}},
		{`(ab|cdef)`, nil},    // "ab" is too short
		{`a.*b`, nil},         // no literal of 3
		{`(?:foo)*bar+`, nil}, // "ba" + r+: the longest part is "ba"
		{`x{2,}yzw`, []string{"yzw"}},
	}
	for _, tc := range tests {
		got := regexpFactors(tc.re, false)
		var s []string
		for _, f := range got {
			s = append(s, string(f))
		}
		if len(s) != len(tc.want) {
			t.Errorf("%s: factors %q, want %q", tc.re, s, tc.want)
			continue
		}
		for j := range s {
			if s[j] != tc.want[j] {
				t.Errorf("%s: factors %q, want %q", tc.re, s, tc.want)
			}
		}
	}
}
