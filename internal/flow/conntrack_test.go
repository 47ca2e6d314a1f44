package flow

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
)

func ctFlow(id uint32, mark uint32, src, dst string, dport uint16, start time.Time, sent, back uint64) conntrack.Flow {
	f := conntrack.NewFlow(6, 0, netip.MustParseAddr(src), netip.MustParseAddr(dst), 40000, dport, 120, mark)
	f.ID = id
	f.Timestamp.Start = start
	f.CountersOrig = conntrack.Counter{Bytes: sent, Packets: sent / 100}
	f.CountersReply = conntrack.Counter{Direction: true, Bytes: back, Packets: back / 100}
	return f
}

func newTestCollector(t *testing.T) (*Collector, *Buffer) {
	t.Helper()
	buf := NewBuffer(100)
	c, err := NewCollector(CollectorConfig{Host: "h1", Workload: labWorkload, DecodeMark: testMark, Log: quietLog()}, buf)
	if err != nil {
		t.Fatal(err)
	}
	return c, buf
}

func TestCollectorLifecycle(t *testing.T) {
	c, buf := newTestCollector(t)
	start := time.Unix(1000, 0)
	now := start.Add(time.Second)
	f := ctFlow(7, markAllowTCP, "10.77.1.2", "10.77.2.2", 8080, time.Time{}, 0, 0)
	c.eventAt(conntrack.Event{Type: conntrack.EventNew, Flow: &f}, now) // NEW carries no timestamp
	if buf.Len() != 0 {
		t.Fatal("a NEW event produced a record")
	}
	// Take what each step produced, as the shipper would: the buffer
	// would otherwise replace a waiting update by the next one.
	var recs []Record
	dumped := func(f conntrack.Flow, at time.Duration) {
		c.reconcile([]conntrack.Flow{f}, start.Add(at))
		recs = buf.Take(recs, 10)
	}
	dumped(ctFlow(7, markAllowTCP, "10.77.1.2", "10.77.2.2", 8080, start, 1000, 500), 10*time.Second)
	dumped(ctFlow(7, markAllowTCP, "10.77.1.2", "10.77.2.2", 8080, start, 1000, 500), 20*time.Second) // idle: nothing new
	dumped(ctFlow(7, markAllowTCP, "10.77.1.2", "10.77.2.2", 8080, start, 3000, 800), 30*time.Second)
	end := ctFlow(7, markAllowTCP, "10.77.1.2", "10.77.2.2", 8080, start, 3500, 900)
	end.Timestamp.Stop = start.Add(35 * time.Second)
	c.eventAt(conntrack.Event{Type: conntrack.EventDestroy, Flow: &end}, start.Add(36*time.Second))
	recs = buf.Take(recs, 10)
	if len(recs) != 3 {
		t.Fatalf("%d records, want update, update, end: %v", len(recs), ids(recs))
	}
	wantID := ConnID("h1", 7, start)
	for i, want := range []struct {
		kind       Kind
		sent, back uint64
	}{{KindUpdate, 1000, 500}, {KindUpdate, 3000, 800}, {KindEnd, 3500, 900}} {
		r := recs[i]
		if r.ID != wantID || r.Kind != want.kind || r.SrcBytes != want.sent || r.DstBytes != want.back || !r.Start.Equal(start) || r.RuleID != 42 || r.Verdict != Allow ||
			r.SrcWorkload != "client" || r.DstWorkload != "server" || r.SrcPort != 40000 || r.DstPort != 8080 {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if !recs[2].End.Equal(end.Timestamp.Stop) || !recs[2].Seen.Equal(recs[2].End) {
		t.Errorf("end at %v, seen %v", recs[2].End, recs[2].Seen)
	}
	if st := c.Stats(); st.Open != 0 || st.Updates != 2 || st.Ends != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestCollectorVanished: when a DESTROY event is lost (the event socket
// overflowed), the second dump that misses the connection ends it with its
// last totals; an event that was merely late finds it already ended and
// changes nothing the manager cannot merge.
func TestCollectorVanished(t *testing.T) {
	c, buf := newTestCollector(t)
	start := time.Unix(1000, 0)
	f := ctFlow(9, markAllowTCP, "10.77.1.2", "10.77.2.2", 8080, start, 2000, 100)
	c.reconcile([]conntrack.Flow{f}, start.Add(10*time.Second))
	recs := buf.Take(nil, 10)
	c.reconcile(nil, start.Add(20*time.Second))
	if got := buf.Len(); got != 0 {
		t.Fatalf("after one missing dump: %d records, want none", got)
	}
	c.reconcile(nil, start.Add(30*time.Second))
	recs = buf.Take(recs, 10)
	if len(recs) != 2 || recs[1].Kind != KindEnd || recs[1].SrcBytes != 2000 || recs[1].ID != recs[0].ID || !recs[1].End.Equal(start.Add(20*time.Second)) {
		t.Fatalf("records %+v", recs)
	}
	if st := c.Stats(); st.Vanished != 1 || st.Open != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCollectorFilters(t *testing.T) {
	c, buf := newTestCollector(t)
	start := time.Unix(1000, 0)
	flows := []conntrack.Flow{
		ctFlow(1, 0, "10.77.1.2", "10.77.2.2", 8080, start, 100, 100),            // not ours: no rule
		ctFlow(2, markAllowTCP, "10.77.1.3", "10.77.2.3", 8080, start, 100, 100), // no local end
		ctFlow(3, markAllowTCP, "10.77.1.3", "10.77.2.2", 8080, start, 100, 100), // local destination
		ctFlow(4, markAllowTCP, "fd77:1::2", "fd77:9::9", 443, start, 100, 100),  // local source, IPv6
		ctFlow(5, markAllowUDP, "10.77.1.2", "10.77.2.2", 8080, start, 100, 100),
	}
	c.reconcile(flows, start.Add(time.Second))
	recs := buf.Take(nil, 10)
	got := map[uint32]bool{}
	for _, r := range recs {
		var ct uint32
		for _, f := range flows {
			if ConnID("h1", f.ID, start) == r.ID {
				ct = f.ID
			}
		}
		got[ct] = true
	}
	if len(recs) != 3 || !got[3] || !got[4] || !got[5] {
		t.Errorf("reported %v, want connections 3, 4 and 5", got)
	}
	if c.Stats().Skipped != 2 {
		t.Errorf("skipped %d, want 2", c.Stats().Skipped)
	}
}

// TestCollectorAnnotates: the Annotate hook sees every record of a
// connection, with its addresses and ports, before it is buffered; what it
// adds goes out with the record.
func TestCollectorAnnotates(t *testing.T) {
	buf := NewBuffer(100)
	learned := map[netip.AddrPort]string{netip.MustParseAddrPort("10.77.2.2:22"): "APP_SSH"}
	calls := 0
	c, err := NewCollector(CollectorConfig{Host: "h1", Workload: labWorkload, DecodeMark: testMark, Log: quietLog(),
		Annotate: func(r *Record) {
			calls++
			r.App = learned[netip.AddrPortFrom(r.Dst, r.DstPort)]
		}}, buf)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1000, 0)
	ssh := ctFlow(1, markAllowTCP, "10.77.1.2", "10.77.2.2", 22, start, 1000, 500)
	web := ctFlow(2, markAllowTCP, "10.77.1.2", "10.77.2.2", 8080, start, 1000, 500)
	c.reconcile([]conntrack.Flow{ssh, web}, start.Add(10*time.Second))
	recs := buf.Take(nil, 10) // else the end replaces the waiting update
	end := ssh
	end.Timestamp.Stop = start.Add(15 * time.Second)
	c.eventAt(conntrack.Event{Type: conntrack.EventDestroy, Flow: &end}, start.Add(16*time.Second))
	recs = buf.Take(recs, 10)
	if len(recs) != 3 || calls != 3 {
		t.Fatalf("%d records, %d annotate calls: %+v", len(recs), calls, recs)
	}
	for _, r := range recs {
		want := ""
		if r.DstPort == 22 {
			want = "APP_SSH"
		}
		if r.App != want {
			t.Errorf("%s record to port %d: app %q, want %q", r.Kind, r.DstPort, r.App, want)
		}
	}
}
