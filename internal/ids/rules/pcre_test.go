package rules

import (
	"regexp"
	"strings"
	"testing"
)

// latin1Reader reads each byte as one rune, as the engine must for a
// Latin1 Match.
type latin1Reader struct {
	b []byte
	i int
}

func (r *latin1Reader) ReadRune() (rune, int, error) {
	if r.i >= len(r.b) {
		return 0, 0, errEOF
	}
	c := r.b[r.i]
	r.i++
	return rune(c), 1, nil
}

type eofError struct{}

func (eofError) Error() string { return "EOF" }

var errEOF = eofError{}

func pcreMatches(t *testing.T, m Match, data string) bool {
	t.Helper()
	re, err := regexp.Compile(m.Regexp)
	if err != nil {
		t.Fatalf("%s does not compile: %v", m.Regexp, err)
	}
	if m.Latin1 {
		return re.MatchReader(&latin1Reader{b: []byte(data)})
	}
	return re.MatchString(data)
}

func TestTranslatePCRE(t *testing.T) {
	tests := []struct {
		expr, flags string
		want        string // the RE2 expression, "" to skip
		latin1      bool
		match, miss []string
	}{
		{`^GET /`, "", `^GET /`, false, []string{"GET /x"}, []string{" GET /"}},
		{`abc`, "i", `(?i)abc`, false, []string{"xABCx"}, []string{"ab"}},
		{`a.b`, "s", `(?s)a.b`, false, []string{"a\nb"}, nil},
		{`^b`, "m", `(?m)^b`, false, []string{"a\nb"}, []string{"ab"}},
		{`a b  # comment
		  c`, "x", `abc`, false, []string{"abc"}, []string{"a b c"}},
		{`a\ b [ ]`, "x", `a\x20b[ ]`, false, []string{"a b "}, nil},
		{`b`, "A", `\A(?:b)`, false, []string{"bc"}, []string{"ab"}},
		{`a.*b`, "G", `(?U)a.*b`, false, []string{"ab"}, nil},
		{`x`, "EOB", `x`, false, []string{"x"}, nil},
		{`a\x41\x{42}\103\0`, "", `a\x41\x42\x43\x00`, false, []string{"aABC\x00"}, nil},
		{`\xff\xfe`, "", `\x{ff}\x{fe}`, true, []string{"a\xff\xfe"}, []string{"\xff", "\u00ff\u00fe"}},
		{`[\x80-\xff]{2}`, "", `[\x{80}-\x{ff}]{2}`, true, []string{"\x90\xa0"}, []string{"ab", "\x90"}},
		{`\e\cA\cz`, "", `\x1b\x01\x1a`, false, []string{"\x1b\x01\x1a"}, nil},
		{`a\hb\Hc\vd\Ve`, "", `a[\t\x20]b[^\t\x20]c[\n\x0b\f\r]d[^\n\x0b\f\r]e`, false, []string{"a b-c\nd-e"}, []string{"ab-c\nd-e"}},
		{`[\h\v]`, "", `[\t\x20\n\x0b\f\r]`, false, []string{"\t"}, []string{"x"}},
		{`\Qa.b*\E+`, "", `a\.b\*+`, false, []string{"a.b**"}, []string{"axb"}},
		{`[]a]`, "", `[\]a]`, false, []string{"]"}, []string{"b"}},
		{`[^]a]`, "", `[^\]a]`, false, []string{"b"}, []string{"]"}},
		{`[[:alpha:]]+[\b]`, "", `[[:alpha:]]+[\x08]`, false, []string{"ab\b"}, nil},
		{`a(?#note)b`, "", `ab`, false, []string{"ab"}, nil},
		{`(?'name'a)(?P<n2>b)(?<n3>c)(?:d)`, "", `(?P<name>a)(?P<n2>b)(?<n3>c)(?:d)`, false, []string{"abcd"}, nil},
		{`(?i)a(?-i:b)`, "", `(?i)a(?-i:b)`, false, []string{"Ab"}, []string{"AB"}},
		{`a{1075,}`, "", `(?:a){1000}(?:a){75}(?:a)*`, false, []string{strings.Repeat("a", 1075)}, []string{strings.Repeat("a", 1074)}},
		{`^x[^\r\n]{128,1024}$`, "E", `^x(?:[^\r\n]){128}(?:[^\r\n]){0,896}$`, false, []string{"x" + strings.Repeat("b", 1024)}, []string{"x" + strings.Repeat("b", 1025), "x" + strings.Repeat("b", 127)}},
		{`(ab){1001}`, "", `(?:(ab)){1000}(?:(ab)){1}`, false, []string{strings.Repeat("ab", 1001)}, []string{strings.Repeat("ab", 1000)}},
		{`\.exe$`, "", `\.exe(?:\n?\z)`, false, []string{"a.exe", "a.exe\n"}, []string{"a.exe\n\n", "a.exes", "a.exe\r\n"}},
		{`\.exe$`, "E", `\.exe$`, false, []string{"a.exe"}, []string{"a.exe\n"}},
		{`exe$`, "m", `(?m)exe$`, false, []string{"exe\nx"}, nil},
		{`[$]\$`, "", `[$]\$`, false, []string{"$$"}, nil},
		{`a{,3}b{x}`, "", `a\{,3}b\{x}`, false, []string{"a{,3}b{x}"}, nil},
		{`a+?b*?`, "", `a+?b*?`, false, []string{"a"}, nil},
		{`\/\:\"`, "", `\/\:\"`, false, []string{`/:"`}, nil},
		{`\d\w\s\b\B\n\t`, "", `\d\w\s\b\B\n\t`, false, nil, nil},
	}
	for _, tt := range tests {
		m, err := translatePCRE(tt.expr, tt.flags)
		if err != nil {
			t.Errorf("/%s/%s: %v", tt.expr, tt.flags, err)
			continue
		}
		if tt.want != "" && m.Regexp != tt.want {
			t.Errorf("/%s/%s = %s, want %s", tt.expr, tt.flags, m.Regexp, tt.want)
		}
		if m.Latin1 != tt.latin1 {
			t.Errorf("/%s/%s: Latin1 %v", tt.expr, tt.flags, m.Latin1)
		}
		for _, s := range tt.match {
			if !pcreMatches(t, m, s) {
				t.Errorf("/%s/%s (%s) does not match %q", tt.expr, tt.flags, m.Regexp, s)
			}
		}
		for _, s := range tt.miss {
			if pcreMatches(t, m, s) {
				t.Errorf("/%s/%s (%s) matches %q", tt.expr, tt.flags, m.Regexp, s)
			}
		}
	}
	for flag, buf := range map[string]Buffer{"U": BufHTTPURI, "I": BufHTTPURIRaw, "P": BufHTTPRequestBody, "Q": BufHTTPResponseBody,
		"H": BufHTTPHeader, "D": BufHTTPHeaderRaw, "M": BufHTTPMethod, "C": BufHTTPCookie, "S": BufHTTPStatCode,
		"Y": BufHTTPStatMsg, "V": BufHTTPUserAgent, "W": BufHTTPHost, "Z": BufHTTPHostRaw} {
		m, err := translatePCRE("x", flag+"R")
		if err != nil || m.Buffer != buf || !m.Relative {
			t.Errorf("flag %s: buffer %v relative %v err %v", flag, m.Buffer, m.Relative, err)
		}
	}
}
