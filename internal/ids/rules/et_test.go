package rules

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// etOpenPath is the Emerging Threats Open rule file, test data kept
// beside the repository (never in it).
func etOpenPath(tb testing.TB) string {
	tb.Helper()
	p := etOpenFile()
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("ET Open rules not found at %s (test data beside the repository): %v", p, err)
	}
	return p
}

func etOpenFile() string {
	_, file, _, _ := runtime.Caller(0)
	// internal/ids/rules -> repository root -> ../shared
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	return filepath.Join(root, "..", "shared", "data", "et-open", "et-open-suricata-5.0.rules.gz")
}

func readETOpen(tb testing.TB) []byte {
	tb.Helper()
	data, err := readGzFile(etOpenPath(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func readGzFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return io.ReadAll(z)
}

func TestETOpen(t *testing.T) {
	data := readETOpen(t)
	start := time.Now()
	rules, probs := Read(bytes.NewReader(data), "et-open.rules", nil)
	elapsed := time.Since(start)
	total := len(rules) + len(probs)
	t.Logf("ET Open: %d rules read in %v: %d load (%.1f%%), %d problems", total, elapsed, len(rules),
		100*float64(len(rules))/float64(total), len(probs))
	if total != 24827 {
		t.Errorf("read %d enabled rules, want 24827 (commented-out rules must not count)", total)
	}
	// 24,358 load today (the rest: pcre constructs RE2 lacks, xbits,
	// stream_size, base64, ... — the table below); fewer is a regression.
	if len(rules) < 24358 {
		t.Errorf("only %d of %d rules load, want at least 24358", len(rules), total)
	}
	for _, l := range problemTable(probs) {
		t.Log(l)
	}
	bySID := map[uint32]*Rule{}
	pcres, latin1 := 0, 0
	for _, r := range rules {
		bySID[r.SID] = r
		if r.Src == nil || r.Dst == nil || r.SrcPorts == nil || r.DstPorts == nil || r.Priority < 1 || r.Raw == "" || r.Line == 0 {
			t.Errorf("sid %d: incomplete rule %+v", r.SID, r)
		}
		for _, m := range r.Matches {
			if m.Kind != MatchPCRE {
				continue
			}
			// The parser only checks the syntax; the engine compiles.
			if _, err := regexp.Compile(m.Regexp); err != nil {
				t.Errorf("sid %d: pcre translated to %q does not compile: %v", r.SID, m.Regexp, err)
			}
			pcres++
			if m.Latin1 {
				latin1++
			}
		}
	}
	t.Logf("%d pcre options translated to RE2 (%d of them Latin1)", pcres, latin1)
	log4j := bySID[2034647]
	if log4j == nil {
		t.Fatal("sid 2034647 (log4j) did not load")
	}
	if log4j.Proto != ProtoHTTP || log4j.Action != ActionAlert || log4j.Classtype != "attempted-admin" || log4j.Priority != 1 || log4j.Rev != 1 {
		t.Errorf("log4j: proto %v action %v classtype %q priority %d rev %d", log4j.Proto, log4j.Action, log4j.Classtype, log4j.Priority, log4j.Rev)
	}
	if !log4j.Flow.Established || !log4j.Flow.ToServer {
		t.Errorf("log4j flow %+v, want established,to_server", log4j.Flow)
	}
	if len(log4j.Matches) != 1 {
		t.Fatalf("log4j matches %+v", log4j.Matches)
	}
	m := log4j.Matches[0]
	if m.Kind != MatchContent || string(m.Pattern) != "${jndi:ldap://" || !m.Nocase || !m.FastPattern || m.Buffer != BufPayload {
		t.Errorf("log4j content %+v", m)
	}
	if got := log4j.Metadata["attack_target"]; !slices.Equal(got, []string{"Server"}) {
		t.Errorf("log4j attack_target %q", got)
	}
	if got := log4j.Metadata["deployment"]; !slices.Equal(got, []string{"Perimeter", "Internal"}) {
		t.Errorf("log4j deployment %q", got)
	}
	if !slices.Contains(log4j.References, Reference{"cve", "2021-44228"}) {
		t.Errorf("log4j references %v", log4j.References)
	}
	if !log4j.Dst.Contains(mustAddr("10.1.2.3")) || log4j.Dst.Contains(mustAddr("8.8.8.8")) {
		t.Errorf("log4j destination [$HOME_NET,$HTTP_SERVERS] = %+v", log4j.Dst)
	}
	if !log4j.Src.Any {
		t.Errorf("log4j source $EXTERNAL_NET = %+v, want any (east-west)", log4j.Src)
	}
	// A DNS rule with the dotprefix transform.
	if r := bySID[2037895]; r == nil || r.Proto != ProtoDNS || len(r.Matches) != 1 ||
		r.Matches[0].Buffer != BufDNSQuery || !r.Matches[0].DotPrefix || !r.Matches[0].EndsWith || string(r.Matches[0].Pattern) != ".drp.su" {
		t.Errorf("sid 2037895 (dns.query dotprefix): %+v", r)
	}
}

// problemTable counts the problems by keyword, most first.
func problemTable(probs []Problem) []string {
	count := map[string]int{}
	for _, p := range probs {
		k := p.Keyword
		if k == "" {
			k = "(error) " + p.Reason
			if i := strings.IndexByte(p.Reason, ':'); i > 0 {
				k = "(error) " + p.Reason[i+1:]
				if len(k) > 90 {
					k = k[:90]
				}
			}
		}
		count[k]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if count[a] != count[b] {
			return count[b] - count[a]
		}
		return strings.Compare(a, b)
	})
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%6d  %s", count[k], k))
	}
	return out
}

// rules40k is ET Open with its commented-out rules enabled, topped up to
// 40,000 rules with copies under new sids.
func rules40k(tb testing.TB) []byte {
	data := readETOpen(tb)
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		l = strings.TrimSpace(strings.TrimPrefix(l, "#"))
		if strings.HasPrefix(l, "alert ") || strings.HasPrefix(l, "drop ") || strings.HasPrefix(l, "pass ") || strings.HasPrefix(l, "reject ") {
			lines = append(lines, l)
		}
	}
	n := len(lines)
	for i := 0; len(lines) < 40000; i++ {
		l := lines[i%n]
		lines = append(lines, strings.Replace(l, "sid:", fmt.Sprintf("sid:9%d", len(lines)), 1))
	}
	return []byte(strings.Join(lines[:40000], "\n") + "\n")
}

// baselineRead is the least any rule reader does: the lines split at
// ";".
func baselineRead(data []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		n += len(strings.Split(sc.Text(), ";"))
	}
	return n
}

// cpuTime is the process's CPU time so far: on a loaded machine wall
// time says little.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoad40k reads 40,000 rules. x-baseline compares it with
// baselineRead over the same bytes, run before each read so that both see
// the same load on a shared machine; cpu-x-baseline compares CPU time,
// and cpu-ms is the CPU time of one read (GC included).
func BenchmarkLoad40k(b *testing.B) {
	data := rules40k(b)
	b.SetBytes(int64(len(data)))
	var base, baseCPU, readCPU time.Duration
	var loaded int
	for b.Loop() {
		b.StopTimer()
		start, c0 := time.Now(), cpuTime()
		if baselineRead(data) == 0 {
			b.Fatal("nothing split")
		}
		base += time.Since(start)
		c1 := cpuTime()
		baseCPU += c1 - c0
		b.StartTimer()
		rules, _ := Read(bytes.NewReader(data), "40k.rules", nil)
		readCPU += cpuTime() - c1
		loaded = len(rules)
	}
	per := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(loaded), "rules-loaded")
	b.ReportMetric(40000/per, "rules/s")
	b.ReportMetric(b.Elapsed().Seconds()/base.Seconds(), "x-baseline")
	b.ReportMetric(readCPU.Seconds()/baseCPU.Seconds(), "cpu-x-baseline")
	b.ReportMetric(readCPU.Seconds()*1000/float64(b.N), "cpu-ms")
}
