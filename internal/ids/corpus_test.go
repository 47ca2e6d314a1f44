package ids_test

import (
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/ids"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// The corpus (testdata/corpus.rules, read with testdata/corpus.vars) is
// run over every capture in testdata/captures; testdata/golden/NAME.json
// holds the alerts each must give. The golden files were written by hand
// from the rules and what each capture holds (testdata/captures/README.md):
// there is deliberately no -update flag, since copying the engine's output
// would make the test agree with any bug.

// goldenAlert is what the golden files pin of each alert.
type goldenAlert struct {
	SID      uint32 `json:"sid"`
	Src      string `json:"src"` // IP:PORT, or IP for ICMP
	Dst      string `json:"dst"`
	Proto    string `json:"proto"`
	AppProto string `json:"app_proto"`
	Action   string `json:"action"`
}

func (a goldenAlert) String() string {
	return fmt.Sprintf("sid %d %s -> %s %s app_proto=%q action=%s", a.SID, a.Src, a.Dst, a.Proto, a.AppProto, a.Action)
}

func sortGolden(as []goldenAlert) {
	slices.SortFunc(as, func(a, b goldenAlert) int {
		return cmp.Or(cmp.Compare(a.SID, b.SID), cmp.Compare(a.Src, b.Src), cmp.Compare(a.Dst, b.Dst))
	})
}

// loadCorpus reads the corpus with its variables and compiles it.
func loadCorpus(t *testing.T) ([]*rules.Rule, *ids.Engine, []rules.Problem) {
	t.Helper()
	vf, err := os.Open(filepath.Join("testdata", "corpus.vars"))
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	vars, err := rules.ReadVars(vf, "corpus.vars")
	if err != nil {
		t.Fatalf("corpus.vars: %v", err)
	}
	rf, err := os.Open(filepath.Join("testdata", "corpus.rules"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	rs, problems := rules.Read(rf, "corpus.rules", vars)
	e, cproblems := ids.Compile(rs)
	return rs, e, append(problems, cproblems...)
}

// TestCorpusProblems: the one rule with a lookahead (not RE2) is reported
// with its sid and why; every other rule loads.
func TestCorpusProblems(t *testing.T) {
	rs, e, problems := loadCorpus(t)
	text, err := os.ReadFile(filepath.Join("testdata", "corpus.rules"))
	if err != nil {
		t.Fatal(err)
	}
	written := len(regexp.MustCompile(`(?m)^(alert|drop|reject|pass) `).FindAll(text, -1))
	if len(problems) != 1 {
		t.Fatalf("problems: got %d, want 1 (sid 1000030, the lookahead):\n%s", len(problems), problemList(problems))
	}
	p := problems[0]
	reason := strings.ToLower(p.Reason)
	if p.SID != 1000030 || !(strings.Contains(reason, "lookahead") || strings.Contains(reason, "re2") || strings.Contains(reason, "(?!")) {
		t.Errorf("problem %+v: want sid 1000030 and a reason naming the lookahead / RE2", p)
	}
	if p.Line == 0 {
		t.Errorf("problem %+v: no line number", p)
	}
	if e.Len() != written-1 {
		t.Errorf("engine has %d rules; the corpus has %d, one of them unusable (parsed %d)", e.Len(), written, len(rs))
	}
}

// TestCorpusCoversKeywords: every keyword the engine promises appears in a
// rule that loads, so the golden tests exercise it.
func TestCorpusCoversKeywords(t *testing.T) {
	rs, _, _ := loadCorpus(t)
	var loaded strings.Builder
	for _, r := range rs {
		if r.SID != 1000030 {
			loaded.WriteString(r.Raw + "\n")
		}
	}
	text := loaded.String()
	for _, kw := range []string{
		"alert http", "drop http", "reject http", "pass http",
		"alert ip ", "alert tcp ", "alert udp ", "alert icmp ", "alert tls ", "alert dns ", "alert ssh ",
		"$HOME_NET", "$EXTERNAL_NET", "$HTTP_PORTS", "!$HTTP_PORTS",
		"msg:", "sid:", "rev:", "gid:", "classtype:", "priority:", "metadata:", "reference:",
		"content:", "nocase;", "depth:", "offset:", "distance:", "within:", "fast_pattern;", "content:!", "|3a",
		"pcre:", "flow:established,to_server", "to_client", "flow:stateless",
		"flowbits:set", "flowbits:isset", "flowbits:unset", "flowbits:noalert",
		"dsize:", "byte_test:", "byte_jump:", "isdataat:", "threshold:", "detection_filter:",
		"http.uri;", "http.method;", "http.host;", "http.user_agent;", "http.header;", "http.request_body;",
		"tls.sni;", "tls.version:", "dns.query;", "ssh.software;",
	} {
		if !strings.Contains(text, kw) {
			t.Errorf("no loaded corpus rule uses %q", kw)
		}
	}
}

// TestCorpusGolden reads every capture with the corpus and compares the
// alerts with the capture's golden file.
func TestCorpusGolden(t *testing.T) {
	_, e, _ := loadCorpus(t)
	caps, err := filepath.Glob(filepath.Join("testdata", "captures", "*.pcap"))
	if err != nil || len(caps) == 0 {
		t.Fatalf("no captures in testdata/captures (%v)", err)
	}
	for _, path := range caps {
		name := strings.TrimSuffix(filepath.Base(path), ".pcap")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
			if err != nil {
				t.Fatalf("every capture needs a golden file: %v", err)
			}
			var want []goldenAlert
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("golden/%s.json: %v", name, err)
			}
			var got []goldenAlert
			stats, err := ids.ReadCapture(path, e, func(a *ids.Alert) { got = append(got, toGolden(a.EVE())) })
			if err != nil {
				t.Fatalf("ReadCapture %s: %v", path, err)
			}
			sortGolden(want)
			sortGolden(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: alerts differ from golden/%s.json (capture stats %+v)\n%s", path, name, stats, alertDiff(got, want))
			}
		})
	}
}

// toGolden keeps what the golden files pin. An application protocol the
// engine could not identify is written "" whatever the engine calls it.
func toGolden(ev ids.EVE) goldenAlert {
	end := func(ip string, port uint16) string {
		if port == 0 {
			return ip
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Sprintf("%s:%d", ip, port)
		}
		return netip.AddrPortFrom(a, port).String()
	}
	app := ev.AppProto
	if app == "failed" || app == "unknown" {
		app = ""
	}
	return goldenAlert{
		SID: ev.Alert.SignatureID, Src: end(ev.SrcIP, ev.SrcPort), Dst: end(ev.DestIP, ev.DestPort),
		Proto: ev.Proto, AppProto: app, Action: ev.Alert.Action,
	}
}

// alertDiff prints both lists and what is missing and extra.
func alertDiff(got, want []goldenAlert) string {
	var b strings.Builder
	count := func(as []goldenAlert) map[goldenAlert]int {
		m := map[goldenAlert]int{}
		for _, a := range as {
			m[a]++
		}
		return m
	}
	g, w := count(got), count(want)
	for _, a := range want {
		if g[a] > 0 {
			g[a]--
			w[a]--
			continue
		}
	}
	b.WriteString("missing (in golden, not given):\n")
	for _, a := range want {
		if w[a] > 0 {
			fmt.Fprintf(&b, "  %s\n", a)
			w[a]--
		}
	}
	b.WriteString("extra (given, not in golden):\n")
	for _, a := range got {
		if g[a] > 0 {
			fmt.Fprintf(&b, "  %s\n", a)
			g[a]--
		}
	}
	b.WriteString("got:\n")
	for _, a := range got {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	b.WriteString("want:\n")
	for _, a := range want {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	return b.String()
}

func problemList(ps []rules.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s:%d sid %d: %s\n", p.File, p.Line, p.SID, p.Reason)
	}
	return b.String()
}

// flowSIDs runs a capture and returns, per client port (the source port of
// to_server alerts, the destination port of to_client ones), the sids
// that alerted, sorted.
func flowSIDs(t *testing.T, e *ids.Engine, capture string) map[uint16][]uint32 {
	t.Helper()
	got := map[uint16][]uint32{}
	_, err := ids.ReadCapture(filepath.Join("testdata", "captures", capture), e, func(a *ids.Alert) {
		ev := a.EVE()
		port := ev.SrcPort
		if ev.SrcIP == "10.77.1.10" {
			port = ev.DestPort
		}
		got[port] = append(got[port], ev.Alert.SignatureID)
	})
	if err != nil {
		t.Fatalf("ReadCapture %s: %v", capture, err)
	}
	for p := range got {
		slices.Sort(got[p])
		got[p] = slices.Compact(got[p])
	}
	return got
}

// The lab's signatures (examples/ids/lab.rules) all load, and find the
// captures' exploit requests that are also the lab's payloads.
func TestLabRulesOnCaptures(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "examples", "ids", "lab.rules"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, problems := rules.Read(f, "lab.rules", rules.DefaultVars())
	e, cproblems := ids.Compile(rs)
	if problems = append(problems, cproblems...); len(problems) > 0 {
		t.Fatalf("lab.rules: every rule must load:\n%s", problemList(problems))
	}
	for _, c := range []struct {
		capture string
		want    map[uint16][]uint32
	}{
		{"http.pcap", map[uint16][]uint32{
			40002: {9000001},          // traversal to /etc/passwd
			40003: {9000002},          // ' OR 1=1--
			40004: {9000003},          // UNION SELECT
			40005: {9000006, 9000007}, // JNDI user agent: the UA and the headers
			40006: {9000010},          // Shellshock Referer
			40008: {9000015},          // sqlmap
			40015: {9000001},          // no pass rule here
		}},
		{"segmented.pcap", map[uint16][]uint32{41001: {9000001, 9000006, 9000007}}},
		{"reordered.pcap", map[uint16][]uint32{41001: {9000001, 9000006, 9000007}}},
		{"tls.pcap", map[uint16][]uint32{}},
	} {
		got := flowSIDs(t, e, c.capture)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s with lab.rules: sids by client port\n got %v\nwant %v", c.capture, got, c.want)
		}
	}
}

// etOpen is the Emerging Threats Open set beside the repository
// (../shared/data/et-open), test data only.
var etOpen = filepath.Join("..", "..", "..", "shared", "data", "et-open", "et-open-suricata-5.0.rules.gz")

// The real ET Open log4j signature (sid 2034647, "${jndi:ldap://" in any
// HTTP request) alerts on the captures' JNDI requests, also when the
// request came one byte per segment and out of order.
func TestETOpenOnCaptures(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the whole ET Open set")
	}
	f, err := os.Open(etOpen)
	if err != nil {
		t.Skipf("ET Open rules not found (%v); CI has them at ../shared beside the repository", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	rs, problems := rules.Read(zr, filepath.Base(etOpen), rules.DefaultVars())
	e, cproblems := ids.Compile(rs)
	t.Logf("ET Open: %d rules read, %d compiled, %d problems", len(rs), e.Len(), len(problems)+len(cproblems))
	for _, c := range []struct {
		capture string
		port    uint16
	}{{"http.pcap", 40005}, {"segmented.pcap", 41001}, {"reordered.pcap", 41001}} {
		got := flowSIDs(t, e, c.capture)
		if !slices.Contains(got[c.port], 2034647) {
			t.Errorf("%s: client port %d alerted %v; want ET sid 2034647 (log4j, http ldap) among them", c.capture, c.port, got[c.port])
		}
		if len(got[40001]) > 0 {
			t.Errorf("%s: the plain GET / from port 40001 alerted %v", c.capture, got[40001])
		}
	}
}
