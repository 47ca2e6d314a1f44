package flowstore

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

func openTest(t testing.TB, opts ...Option) *SQLite {
	t.Helper()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), FileName), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func conn(id string, src, dst string, dport uint16, start time.Time) flow.Record {
	return flow.Record{
		ID: id, Host: "h1", Kind: flow.KindUpdate,
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 6, SrcPort: 40000, DstPort: dport,
		Start: start, Seen: start, RuleID: 42, Verdict: flow.Allow,
	}
}

func update(r flow.Record, at time.Duration, sb, sp, db, dp uint64) flow.Record {
	r.Kind, r.Seen = flow.KindUpdate, r.Start.Add(at)
	r.SrcBytes, r.SrcPackets, r.DstBytes, r.DstPackets = sb, sp, db, dp
	return r
}

func end(r flow.Record, at time.Duration, sb, sp, db, dp uint64) flow.Record {
	r = update(r, at, sb, sp, db, dp)
	r.Kind, r.End = flow.KindEnd, r.Seen
	return r
}

func mustIngest(t *testing.T, s Store, recs ...flow.Record) {
	t.Helper()
	if err := s.Ingest(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func mustQuery(t *testing.T, s Store, f Filter) []flow.Record {
	t.Helper()
	recs, err := s.Query(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestMergeNeverDoubleCounts: updates carry totals, and however batches are
// repeated or reordered the stored flow has the end's totals.
func TestMergeNeverDoubleCounts(t *testing.T) {
	c := conn("h1/0000002a/1", "10.0.0.1", "10.0.0.2", 443, t0)
	c.SrcWorkload, c.DstWorkload = "web-1", "db-1"
	batches := [][]flow.Record{
		{update(c, 10*time.Second, 1000, 10, 500, 8)},
		{update(c, 20*time.Second, 2000, 20, 900, 15), conn("h1/other/1", "10.0.0.3", "10.0.0.2", 443, t0)},
		{end(c, 25*time.Second, 2500, 24, 1000, 17)},
	}
	want := end(c, 25*time.Second, 2500, 24, 1000, 17)
	orders := map[string][]int{
		"in order":             {0, 1, 2},
		"every batch twice":    {0, 0, 1, 1, 2, 2},
		"end then stale":       {2, 0, 1},
		"resent after the end": {0, 1, 2, 1, 0, 2},
		"all in one batch":     {3, 3},
	}
	batches = append(batches, slices.Concat(batches...))
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			s := openTest(t)
			for _, i := range order {
				mustIngest(t, s, batches[i]...)
			}
			got := mustQuery(t, s, Filter{Port: 443, From: Endpoint{Workload: "web-1"}})
			if len(got) != 1 {
				t.Fatalf("%d rows, want 1: %+v", len(got), got)
			}
			g := got[0]
			if g.Kind != flow.KindEnd || g.SrcBytes != want.SrcBytes || g.SrcPackets != want.SrcPackets || g.DstBytes != want.DstBytes ||
				g.DstPackets != want.DstPackets || !g.End.Equal(want.End) || !g.Seen.Equal(want.Seen) || !g.Start.Equal(want.Start) {
				t.Errorf("stored %+v\nwant   %+v", g, want)
			}
			if len(mustQuery(t, s, Filter{})) != 2 {
				t.Errorf("want 2 flows in all")
			}
		})
	}
}

func TestRoundTripAndMalformed(t *testing.T) {
	s := openTest(t)
	icmp := flow.Record{ID: "h2/drop/1/1", Kind: flow.KindDrop, Host: "h2",
		Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Proto: 58, ICMPType: 128, ICMPCode: 0,
		SrcWorkload: "a", DstWorkload: "b", SrcBytes: 312, SrcPackets: 3,
		Start: t0, End: t0.Add(time.Second), Seen: t0.Add(time.Second), RuleID: 99, Verdict: flow.Reject}
	bad := []flow.Record{{Kind: flow.KindEnd, Src: icmp.Src, Dst: icmp.Dst}, {ID: "x", Kind: 9, Src: icmp.Src, Dst: icmp.Dst}, {ID: "y", Kind: flow.KindEnd}}
	mustIngest(t, s, append(bad, icmp)...)
	if s.Skipped() != 3 {
		t.Errorf("skipped %d, want 3", s.Skipped())
	}
	got := mustQuery(t, s, Filter{})
	if len(got) != 1 || got[0] != icmp {
		t.Errorf("got  %+v\nwant %+v", got, icmp)
	}
}

func TestFilters(t *testing.T) {
	s := openTest(t)
	mk := func(id, src, dst string, proto uint8, dport uint16, rule uint32, v flow.Verdict, k flow.Kind, start, seen time.Duration) flow.Record {
		r := conn(id, src, dst, dport, t0.Add(start))
		r.Proto, r.RuleID, r.Verdict, r.Kind, r.Seen = proto, rule, v, k, t0.Add(seen)
		r.SrcWorkload, r.DstWorkload = names[src], names[dst]
		if k == flow.KindEnd || k == flow.KindDrop {
			r.End = r.Seen
		}
		return r
	}
	recs := []flow.Record{
		mk("a", "10.0.0.1", "10.0.1.1", 6, 443, 42, flow.Allow, flow.KindEnd, 0, 1*time.Minute),
		mk("b", "10.0.0.2", "10.0.1.1", 6, 5432, 43, flow.Allow, flow.KindUpdate, 0, 10*time.Minute),
		mk("c", "10.0.0.9", "10.0.1.1", 6, 22, 99, flow.Drop, flow.KindDrop, 5*time.Minute, 5*time.Minute),
		mk("d", "10.0.0.1", "10.0.2.1", 17, 53, 44, flow.Allow, flow.KindEnd, 2*time.Minute, 3*time.Minute),
		mk("e", "fd00::1", "fd00:1::1", 6, 443, 42, flow.Allow, flow.KindEnd, 4*time.Minute, 4*time.Minute),
		mk("f", "10.0.0.9", "10.0.2.1", 17, 161, 100, flow.Reject, flow.KindDrop, 6*time.Minute, 6*time.Minute),
	}
	recs[5].Host = "h2"
	mustIngest(t, s, recs...)
	ep := func(v string) Endpoint {
		e, err := ParseEndpoint(v)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tests := []struct {
		name string
		f    Filter
		want string // IDs, newest first
	}{
		{"all, newest first", Filter{}, "bfceda"},
		{"limit", Filter{Limit: 2}, "bf"},
		{"from workload", Filter{From: ep("web-1")}, "da"},
		{"to workload", Filter{To: ep("db-1")}, "bca"},
		{"from ip", Filter{From: ep("10.0.0.9")}, "fc"},
		{"from cidr", Filter{From: ep("10.0.0.0/30")}, "bda"},
		{"to cidr", Filter{To: ep("10.0.2.0/24")}, "fd"},
		{"from ipv6 cidr", Filter{From: ep("fd00::/64")}, "e"},
		{"ipv4 cidr leaves ipv6 out", Filter{From: ep("0.0.0.0/0")}, "bfcda"},
		{"verdict", Filter{Verdict: flow.Drop}, "c"},
		{"rule", Filter{RuleID: 42}, "ea"},
		{"kind", Filter{Kind: flow.KindDrop}, "fc"},
		{"proto and port", Filter{Proto: 6, Port: 443}, "ea"},
		{"host", Filter{Host: "h2"}, "f"},
		{"since", Filter{Since: t0.Add(4 * time.Minute)}, "bfce"},
		{"until", Filter{Until: t0.Add(3 * time.Minute)}, "bda"},
		{"since and until: active in between", Filter{Since: t0.Add(3 * time.Minute), Until: t0.Add(4*time.Minute + time.Second)}, "bed"},
		{"from and to", Filter{From: ep("web-1"), To: ep("10.0.1.1")}, "a"},
		{"nothing", Filter{From: ep("nobody")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			for _, r := range mustQuery(t, s, tt.f) {
				got += r.ID
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

var names = map[string]string{"10.0.0.1": "web-1", "10.0.0.2": "api-1", "10.0.1.1": "db-1", "fd00::1": "web-6"}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1": "10.0.0.1/32", "::ffff:10.0.0.1": "10.0.0.1/32", "10.1.2.3/8": "10.0.0.0/8", "fd00::1/64": "fd00::/64", "web-1": "workload web-1", "": "",
	} {
		e, err := ParseEndpoint(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		got := ""
		if e.Workload != "" {
			got = "workload " + e.Workload
		} else if e.Prefix.IsValid() {
			got = e.Prefix.String()
		}
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"10.0.0.1/33", "a b"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/8": "10.255.255.255", "10.0.0.4/30": "10.0.0.7", "0.0.0.0/0": "255.255.255.255",
		"fd00::/64": "fd00::ffff:ffff:ffff:ffff", "fd00::/13": "fd07:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "10.0.0.1/32": "10.0.0.1"} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestPrune(t *testing.T) {
	s := openTest(t)
	now := time.Now()
	var recs []flow.Record
	for i := range 100 {
		r := conn(fmt.Sprint(i), "10.0.0.1", "10.0.0.2", 80, now.Add(-time.Duration(100-i)*time.Minute))
		recs = append(recs, r)
	}
	mustIngest(t, s, recs...)
	n, err := s.Prune(context.Background(), Retention{MaxAge: 30*time.Minute + time.Second})
	if err != nil || n != 70 {
		t.Fatalf("prune by age: %d, %v; want 70", n, err)
	}
	n, err = s.Prune(context.Background(), Retention{MaxRows: 10})
	if err != nil || n != 20 {
		t.Fatalf("prune by rows: %d, %v; want 20", n, err)
	}
	got := mustQuery(t, s, Filter{})
	if len(got) != 10 || got[0].ID != "99" || got[9].ID != "90" {
		t.Errorf("kept %d, newest %s, oldest %s", len(got), got[0].ID, got[len(got)-1].ID)
	}
	if n, err := s.Prune(context.Background(), Retention{MaxRows: 1000}); err != nil || n != 0 {
		t.Errorf("prune below the limit: %d, %v", n, err)
	}
}

func TestBackgroundRetention(t *testing.T) {
	s := openTest(t, WithRetention(Retention{MaxAge: time.Hour}, 20*time.Millisecond))
	mustIngest(t, s, conn("old", "10.0.0.1", "10.0.0.2", 80, time.Now().Add(-2*time.Hour)), conn("new", "10.0.0.1", "10.0.0.2", 80, time.Now()))
	deadline := time.Now().Add(5 * time.Second)
	for len(mustQuery(t, s, Filter{})) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("old record not pruned")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFileAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	mustIngest(t, s, conn("a", "10.0.0.1", "10.0.0.2", 80, t0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("flows.db mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	s, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := mustQuery(t, s, Filter{}); len(got) != 1 {
		t.Errorf("after reopen: %d records", len(got))
	}
	if _, err := s.Query(context.Background(), Filter{Limit: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

// TestScanHasNoLimit: Scan reads every selected record, past Query's cap,
// and stops at the callback's first error.
func TestScanHasNoLimit(t *testing.T) {
	s := openTest(t)
	var recs []flow.Record
	for i := range DefaultLimit + 50 {
		recs = append(recs, conn(fmt.Sprintf("h1/%08x/1", i), "10.0.0.1", "10.0.0.2", uint16(1000+i%2), t0.Add(time.Duration(i)*time.Second)))
	}
	mustIngest(t, s, recs...)
	var n, port1001 int
	if err := s.Scan(context.Background(), Filter{Limit: 3}, func(r *flow.Record) error {
		n++
		if r.DstPort == 1001 {
			port1001++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(recs) || port1001 != len(recs)/2 {
		t.Fatalf("scan saw %d records (%d to port 1001), want %d (%d)", n, port1001, len(recs), len(recs)/2)
	}
	n = 0
	if err := s.Scan(context.Background(), Filter{Port: 1001}, func(*flow.Record) error { n++; return nil }); err != nil || n != len(recs)/2 {
		t.Fatalf("scan port 1001: %d records, err %v; want %d", n, err, len(recs)/2)
	}
	stop := fmt.Errorf("stop")
	n = 0
	if err := s.Scan(context.Background(), Filter{}, func(*flow.Record) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("scan stopped after %d records with %v, want 1 and %v", n, err, stop)
	}
}

// TestBatchSizesAgree: a batch is cut into multi-row statements of several
// sizes; whatever the cut, the stored flows are those of ingesting every
// record alone, with repeats of one flow inside one statement and across
// statements merged, and malformed records anywhere skipped.
func TestBatchSizesAgree(t *testing.T) {
	for _, n := range []int{1, 3, 4, 17, 255, 256, 257, 341, 700} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var recs []flow.Record
			flows := map[string]bool{}
			for i := range n {
				// Every third record is a later report of an earlier
				// flow; every 50th is malformed.
				c := conn(fmt.Sprintf("h1/%08x/1", i/3), "10.0.0.1", "10.0.0.2", uint16(1+i/3%7), t0.Add(time.Duration(i/3)*time.Second))
				r := update(c, time.Duration(i%3)*time.Second, uint64(100*(i%3+1)), uint64(i%3+1), 10, 1)
				if i%3 == 2 {
					r = end(c, 3*time.Second, 500, 5, 20, 2)
				}
				if i%50 == 49 {
					r.ID = ""
				} else {
					flows[r.ID] = true
				}
				recs = append(recs, r)
			}
			batch, alone := openTest(t), openTest(t)
			mustIngest(t, batch, recs...)
			for i := len(recs) - 1; i >= 0; i-- { // and in reverse order
				mustIngest(t, alone, recs[i])
			}
			got, want := mustQuery(t, batch, Filter{Limit: MaxLimit}), mustQuery(t, alone, Filter{Limit: MaxLimit})
			if len(got) != len(flows) || batch.Skipped() != uint64(n/50) {
				t.Errorf("%d flows stored, %d skipped; want %d, %d", len(got), batch.Skipped(), len(flows), n/50)
			}
			byID := func(rs []flow.Record) map[string]flow.Record {
				m := map[string]flow.Record{}
				for _, r := range rs {
					m[r.ID] = r
				}
				return m
			}
			g, w := byID(got), byID(want)
			if len(g) != len(w) {
				t.Fatalf("%d flows in one batch, %d one by one", len(g), len(w))
			}
			for id, r := range w {
				if g[id] != r {
					t.Errorf("flow %s\none batch  %+v\none by one %+v", id, g[id], r)
				}
			}
		})
	}
}

// TestAcknowledgedBatchSurvivesCrash: a child process ingests a batch and
// dies without closing the store; the batch is there when the store is
// opened again.
func TestAcknowledgedBatchSurvivesCrash(t *testing.T) {
	if path := os.Getenv("FLOWSTORE_CRASH_DB"); path != "" {
		s, err := OpenSQLite(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var recs []flow.Record
		for i := range 1000 {
			recs = append(recs, conn(fmt.Sprintf("h1/%08x/1", i), "10.0.0.1", "10.0.0.2", 443, t0.Add(time.Duration(i)*time.Millisecond)))
		}
		if err := s.Ingest(context.Background(), recs); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0) // acknowledged, never closed: no checkpoint, no clean WAL shutdown
	}
	path := filepath.Join(t.TempDir(), FileName)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcknowledgedBatchSurvivesCrash$")
	cmd.Env = append(os.Environ(), "FLOWSTORE_CRASH_DB="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("the child left no WAL (%v): the test would not show recovery", err)
	}
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := mustQuery(t, s, Filter{Limit: MaxLimit}); len(got) != 1000 {
		t.Fatalf("%d records after the crash, want 1000", len(got))
	}
}

// TestNoMirrors: a connection two hosts report is read once with
// NoMirrors, and both records stay for the flow list.
func TestNoMirrors(t *testing.T) {
	s := openTest(t)
	a := conn("hv1/a/1", "10.0.0.1", "10.0.0.2", 443, t0)
	b := conn("hv2/b/1", "10.0.0.1", "10.0.0.2", 443, t0)
	b.Host, b.Mirror = "hv2", true
	mustIngest(t, s, a, b)
	var got []string
	if err := s.Scan(context.Background(), Filter{NoMirrors: true}, func(r *flow.Record) error {
		got = append(got, r.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != a.ID {
		t.Errorf("NoMirrors scan read %v, want only %s", got, a.ID)
	}
	all := mustQuery(t, s, Filter{})
	if len(all) != 2 {
		t.Fatalf("query: %d records, want both", len(all))
	}
	for _, r := range all {
		if r.Mirror != (r.ID == b.ID) {
			t.Errorf("record %s: mirror %v after a round trip", r.ID, r.Mirror)
		}
	}
}
