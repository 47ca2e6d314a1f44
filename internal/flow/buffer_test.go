package flow

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func rec(kind Kind, id string, bytes uint64) Record {
	return Record{ID: id, Kind: kind, Host: "h", SrcBytes: bytes, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 6}
}

func ids(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = fmt.Sprintf("%s:%s:%d", r.ID, r.Kind, r.SrcBytes)
	}
	return out
}

func TestAggregateScan(t *testing.T) {
	buf := NewBuffer(100)
	a := NewAggregator("h1", 10, func(a netip.Addr) string {
		if a == netip.MustParseAddr("10.0.0.2") {
			return "db-1"
		}
		return ""
	}, buf)
	t0 := time.Unix(1000, 0)
	var p Packet
	// A client retrying port 5432 from 50 source ports, and one probe to 22.
	for i := range 50 {
		if err := p.Decode(ipv4(6, "10.0.0.9", "10.0.0.2", 0, ports(uint16(40000+i), 5432))); err != nil {
			t.Fatal(err)
		}
		a.Add(&p, 7, Drop, t0.Add(time.Duration(i)*time.Millisecond))
	}
	p.Decode(ipv4(6, "10.0.0.9", "10.0.0.2", 0, ports(41000, 22)))
	a.Add(&p, 7, Drop, t0)
	p.Decode(ipv4(6, "10.0.0.9", "10.0.0.2", 0, ports(41000, 22)))
	a.Add(&p, 7, Drop, t0.Add(time.Second))
	if buf.Len() != 0 {
		t.Fatalf("records before the window closed: %d", buf.Len())
	}
	a.Flush()
	recs := buf.Take(nil, 100)
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2: %v", len(recs), ids(recs))
	}
	byPort := map[uint16]Record{}
	for _, r := range recs {
		byPort[r.DstPort] = r
		if r.Kind != KindDrop || r.RuleID != 7 || r.Verdict != Drop || r.DstWorkload != "db-1" || r.SrcWorkload != "" || r.Host != "h1" {
			t.Errorf("record %+v", r)
		}
	}
	pg, ssh := byPort[5432], byPort[22]
	if pg.SrcPackets != 50 || pg.SrcBytes != 50*40 || pg.SrcPort != 0 {
		t.Errorf("5432: %d packets %d bytes src port %d, want 50, 2000, 0 (several)", pg.SrcPackets, pg.SrcBytes, pg.SrcPort)
	}
	if !pg.Start.Equal(t0) || !pg.End.Equal(t0.Add(49*time.Millisecond)) {
		t.Errorf("5432: %v..%v", pg.Start, pg.End)
	}
	if ssh.SrcPackets != 2 || ssh.SrcPort != 41000 {
		t.Errorf("22: %d packets from port %d, want 2 from 41000", ssh.SrcPackets, ssh.SrcPort)
	}
	if pg.ID == ssh.ID {
		t.Errorf("two records share ID %s", pg.ID)
	}
	// The next window starts empty.
	a.Flush()
	if buf.Len() != 0 {
		t.Errorf("empty window produced %d records", buf.Len())
	}
}

func TestAggregateKeyLimitFlushesEarly(t *testing.T) {
	buf := NewBuffer(1000)
	a := NewAggregator("h", 8, nil, buf)
	var p Packet
	for port := range 20 {
		p.Decode(ipv4(6, "10.0.0.9", "10.0.0.2", 0, ports(1, uint16(port+1))))
		a.Add(&p, 3, Reject, time.Now())
	}
	if got := buf.Len(); got != 16 {
		t.Errorf("%d records out before Flush, want 16 (two full windows)", got)
	}
	a.Flush()
	if got := buf.Len(); got != 20 {
		t.Errorf("%d records after Flush, want 20", got)
	}
	if a.EarlyFlushes() != 2 {
		t.Errorf("early flushes %d, want 2", a.EarlyFlushes())
	}
}

func TestBufferOverflowDropsOldestAndCounts(t *testing.T) {
	b := NewBuffer(4)
	for i := range 10 {
		b.Push(rec(KindEnd, fmt.Sprint("e", i), 1))
	}
	b.Push(rec(KindDrop, "d", 1))
	s := b.Stats()
	if s.Len != 4 || s.Pushed != 11 || s.Dropped != 7 || s.DroppedEnds != 7 || s.DroppedDrops != 0 {
		t.Errorf("stats %+v", s)
	}
	got := ids(b.Take(nil, 10))
	want := []string{"e7:end:1", "e8:end:1", "e9:end:1", "d:drop:1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kept %v, want the newest %v", got, want)
	}
}

func TestBufferCoalescesWaitingUpdates(t *testing.T) {
	b := NewBuffer(10)
	b.Push(rec(KindUpdate, "a", 1), rec(KindUpdate, "b", 1))
	b.Push(rec(KindUpdate, "a", 2), rec(KindDrop, "d", 5))
	b.Push(rec(KindEnd, "a", 3))
	// The end replaced the update; a later duplicate end is kept (the
	// manager merges it).
	b.Push(rec(KindEnd, "a", 3))
	got := ids(b.Take(nil, 10))
	want := []string{"a:end:3", "b:update:1", "d:drop:5", "a:end:3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if s := b.Stats(); s.Coalesced != 2 || s.Pushed != 6 || s.Taken != 4 {
		t.Errorf("stats %+v", s)
	}
	// An update taken by the shipper is not replaced any more.
	b.Push(rec(KindUpdate, "x", 1))
	taken := b.Take(nil, 1)
	b.Push(rec(KindUpdate, "x", 2))
	if got := ids(append(taken, b.Take(nil, 10)...)); fmt.Sprint(got) != "[x:update:1 x:update:2]" {
		t.Errorf("got %v", got)
	}
}

func TestBufferRequeueKeepsOrderAndCoalescing(t *testing.T) {
	b := NewBuffer(5)
	b.Push(rec(KindEnd, "1", 1), rec(KindEnd, "2", 1), rec(KindEnd, "3", 1))
	batch := b.Take(nil, 2)
	b.Push(rec(KindUpdate, "u", 1))
	b.Requeue(batch)
	b.Push(rec(KindUpdate, "u", 2)) // still coalesces after the requeue
	got := ids(b.Take(nil, 10))
	want := []string{"1:end:1", "2:end:1", "3:end:1", "u:update:2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// A requeue that does not fit drops the oldest of the batch.
	b.Push(rec(KindEnd, "4", 1), rec(KindEnd, "5", 1), rec(KindEnd, "6", 1), rec(KindEnd, "7", 1))
	b.Requeue([]Record{rec(KindEnd, "a", 1), rec(KindEnd, "b", 1), rec(KindEnd, "c", 1)})
	got = ids(b.Take(nil, 10))
	want = []string{"c:end:1", "4:end:1", "5:end:1", "6:end:1", "7:end:1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if s := b.Stats(); s.DroppedEnds != 2 {
		t.Errorf("dropped ends %d, want 2", s.DroppedEnds)
	}
}
