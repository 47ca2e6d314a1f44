package tagexpr

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var shopWeb = map[string]string{"app": "shop", "tier": "web", "env": "prod", "k8s.io/ns": "a-b"}

func TestEval(t *testing.T) {
	tests := []struct {
		src  string
		tags map[string]string
		want bool
	}{
		{`app == "shop"`, shopWeb, true},
		{`app == "shop"`, nil, false},
		{`app != "shop"`, shopWeb, false},
		{`app != "shop"`, nil, true}, // a missing tag equals no value
		{`app == 'shop'`, shopWeb, true},
		{`tier in ("web", "api")`, shopWeb, true},
		{`tier in ("db")`, shopWeb, false},
		{`tier not in ("db")`, shopWeb, true},
		{`tier not in ("web","db")`, shopWeb, false},
		{`missing in ("x")`, shopWeb, false},
		{`missing not in ("x")`, shopWeb, true},
		{`has(env)`, shopWeb, true},
		{`has(owner)`, shopWeb, false},
		{`!has(owner)`, shopWeb, true},
		{`all()`, nil, true},
		{`!all()`, shopWeb, false},
		{`app == "shop" && tier == "db"`, shopWeb, false},
		{`app == "shop" && tier == "db" || env == "prod"`, shopWeb, true},
		{`app == "shop" && (tier == "db" || env == "dev")`, shopWeb, false},
		{`!(app == "shop") || tier == "web"`, shopWeb, true},
		{`!!has(app)`, shopWeb, true},
		{`k8s.io/ns == "a-b"`, shopWeb, true},
		{`has == "x"`, map[string]string{"has": "x"}, true}, // keywords are keys where a key fits
		{`in in ("x")`, map[string]string{"in": "x"}, true},
		{`note == "say \"hi\" \\ bye"`, map[string]string{"note": `say "hi" \ bye`}, true},
		{`app == ""`, map[string]string{"app": ""}, true},
		{`app == ""`, nil, false},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := e.Eval(tt.tags); got != tt.want {
			t.Errorf("Parse(%q).Eval(%v) = %v, want %v", tt.src, tt.tags, got, tt.want)
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct{ src, want string }{
		{`app=="shop"`, `app == "shop"`},
		{`tier in('web','api')`, `tier in ("web", "api")`},
		{`tier not   in ("a")`, `tier not in ("a")`},
		{`(a == "1" && b == "2") && c == "3"`, `a == "1" && b == "2" && c == "3"`},
		{`a == "1" || (b == "2" || c == "3")`, `a == "1" || b == "2" || c == "3"`},
		{`(a == "1" || b == "2") && c == "3"`, `(a == "1" || b == "2") && c == "3"`},
		{`a == "1" || b == "2" && c == "3"`, `a == "1" || b == "2" && c == "3"`},
		{`!(a == "1")`, `!a == "1"`},
		{`!(a == "1" && b == "2")`, `!(a == "1" && b == "2")`},
		{`((has(x)))`, `has(x)`},
		{`  all ( )  `, `all()`},
		{`v == 'it\'s'`, `v == "it's"`},
		{`v == "a\\b\"c"`, `v == "a\\b\"c"`},
		{"v == \"caf\u00e9\"", "v == \"caf\u00e9\""},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %s, want %s", tt.src, got, tt.want)
		}
		checkRoundTrip(t, tt.src)
	}
}

func TestKeys(t *testing.T) {
	e, err := Parse(`tier in ("a") && (has(app) || !env == "x") && tier != "b" && all()`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Keys(), []string{"app", "env", "tier"}; !slices.Equal(got, want) {
		t.Errorf("Keys() = %q, want %q", got, want)
	}
	e, _ = Parse(`all()`)
	if got := e.Keys(); len(got) != 0 {
		t.Errorf("all().Keys() = %q, want none", got)
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{``, `column 1: empty expression`},
		{`   `, `column 4: empty expression`},
		{`app == "shop" && tier in "web"`, `column 26: expected "(" after "in"`},
		{`app == "shop" &&`, `column 17: unexpected end of expression; expected a tag key, "!", "(", has(KEY) or all()`},
		{`app = "shop"`, `column 5: expected "==", got "="`},
		{`app == shop`, `column 8: expected a quoted string after "==", got shop (write "shop")`},
		{`app == "shop`, `column 8: unterminated string`},
		{`app == "a\n"`, `column 10: unknown escape "\n" in string; only \", \' and \\ are allowed`},
		{`app`, `column 4: expected "==", "!=", "in" or "not in" after tag key "app", got end of expression`},
		{`app not ("a")`, `column 9: expected "in" after "not"`},
		{`app in ()`, `column 9: expected a quoted string after "in (", got ")"`},
		{`app not in ("a" "b")`, `column 17: expected "," or ")" in the list, got string "b"`},
		{`app in ("a",)`, `column 13: expected a quoted string in the list, got ")"`},
		{`(app == "a"`, `column 12: expected ")" to close "(" at column 1, got end of expression`},
		{`app == "a")`, `column 11: expected "&&" or "||", got ")"`},
		{`app == "a" tier == "b"`, `column 12: expected "&&" or "||", got tier`},
		{`app == "a" & b`, `column 12: expected "&&", got "&"`},
		{`app == "a" | b`, `column 12: expected "||", got "|"`},
		{`has()`, `column 5: expected a tag key in has(), got ")"`},
		{`has(a b)`, `column 7: expected ")" after has(a, got b`},
		{`all(x)`, `column 5: expected ")" after "all(": all() takes no argument`},
		{`9app == "a"`, `column 1: bad tag key "9app": a key starts with a letter or "_"`},
		{`app == "a" && @`, `column 15: unexpected character '@'`},
		{`app == "a" @`, `column 12: unexpected character '@'`},
		{"x == \"\u00e9\" && ?", `column 13: unexpected character '?'`}, // columns count characters
		{`== "a"`, `column 1: expected a tag key, "!", "(", has(KEY) or all(), got "=="`},
		{strings.Repeat("(", 200) + `a == "b"` + strings.Repeat(")", 200), `column 101: expression nested too deeply`},
		{strings.Repeat("!", 200) + `has(a)`, `column 101: expression nested too deeply`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error %s", tt.src, tt.want)
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) error is %T, want *SyntaxError", tt.src, err)
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q) error:\n got %s\nwant %s", tt.src, err, tt.want)
		}
	}
}

func TestValidKey(t *testing.T) {
	for k, want := range map[string]bool{
		"app": true, "_x": true, "k8s.io/app-name": true, "A1": true,
		"": false, "1a": false, "-a": false, "a b": false, "a=b": false, "é": false,
	} {
		if got := ValidKey(k); got != want {
			t.Errorf("ValidKey(%q) = %v, want %v", k, got, want)
		}
	}
}

func TestEvalNoAllocs(t *testing.T) {
	e, err := Parse(`app == "shop" && tier in ("web", "api") && !has(quarantine) || env not in ("dev") && all()`)
	if err != nil {
		t.Fatal(err)
	}
	var sink bool
	if n := testing.AllocsPerRun(1000, func() { sink = e.Eval(shopWeb) != sink }); n != 0 {
		t.Errorf("Eval allocates %v times per run, want 0", n)
	}
}

func BenchmarkEval(b *testing.B) {
	e, err := Parse(`app == "shop" && tier in ("web", "api", "worker") && !has(quarantine)`)
	if err != nil {
		b.Fatal(err)
	}
	tags := map[string]string{"app": "shop", "tier": "worker", "env": "prod", "owner": "team-a", "os": "linux"}
	b.ReportAllocs()
	for b.Loop() {
		e.Eval(tags)
	}
}

func checkRoundTrip(t *testing.T, src string) {
	t.Helper()
	e, err := Parse(src)
	if err != nil {
		return
	}
	s := e.String()
	e2, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q) ok, but its String() %q does not parse: %v", src, s, err)
	}
	if s2 := e2.String(); s2 != s {
		t.Fatalf("String() not stable for %q: %q then %q", src, s, s2)
	}
	if !slices.Equal(e.Keys(), e2.Keys()) {
		t.Fatalf("Keys() changed across round trip of %q", src)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`app == "shop" && tier in ("web","api")`,
		`!(a == "1" || b != "2") && has(c) || all()`,
		`x not in ('a', "b\"c", "d\\e")`,
		`((a == "1"))`, `!!!has(z)`, `k8s.io/app-name == "x"`,
		`app == "shop`, `a in (`, `&&`, `has(`, "\xff == \"x\"", `a == "é"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Column < 1 {
				t.Fatalf("Parse(%q): bad error %#v", src, err)
			}
			return
		}
		checkRoundTrip(t, src)
		e.Eval(nil)
		e.Eval(shopWeb)
	})
}
