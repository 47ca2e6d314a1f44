package stream

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// sink collects what a Conn delivers and fails on a gap or a repeat.
type sink struct {
	t    testing.TB
	data [2][]byte
}

func (s *sink) deliver(dir Dir, off uint64, b []byte) {
	if off != uint64(len(s.data[dir])) {
		s.t.Fatalf("%v: delivered at offset %d, want %d", dir, off, len(s.data[dir]))
	}
	if len(b) == 0 {
		s.t.Fatalf("%v: empty delivery at %d", dir, off)
	}
	s.data[dir] = append(s.data[dir], b...)
}

type seg struct {
	dir     Dir
	seq     uint32
	flags   uint8
	payload []byte
}

// split cuts payload into segments of at most size bytes starting at isn+1.
func split(dir Dir, isn uint32, payload []byte, size int) []seg {
	var out []seg
	for i := 0; i < len(payload); i += size {
		end := min(i+size, len(payload))
		out = append(out, seg{dir, isn + 1 + uint32(i), FlagACK, payload[i:end]})
	}
	return out
}

func run(t testing.TB, c *Conn, segs []seg) (*sink, Anomaly) {
	s := &sink{t: t}
	var all Anomaly
	for _, g := range segs {
		all |= c.Segment(g.dir, g.seq, g.flags, g.payload, s.deliver)
	}
	return s, all
}

func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

func TestInOrder(t *testing.T) {
	const isnC, isnS = 1000, 7_000_000
	req := []byte("GET /index.html HTTP/1.1\r\nHost: shop\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	segs := []seg{
		{ToServer, isnC, FlagSYN, nil},
		{ToClient, isnS, FlagSYN | FlagACK, nil},
		{ToServer, isnC + 1, FlagACK, nil},
	}
	segs = append(segs, split(ToServer, isnC, req, 7)...)
	segs = append(segs, split(ToClient, isnS, resp, 1460)...)
	segs = append(segs, seg{ToServer, isnC + 1 + uint32(len(req)), FlagFIN | FlagACK, nil})
	var c Conn
	s, an := run(t, &c, segs)
	if an != 0 {
		t.Errorf("anomaly %v", an)
	}
	if !bytes.Equal(s.data[ToServer], req) || !bytes.Equal(s.data[ToClient], resp) {
		t.Fatalf("got %q / %q", s.data[ToServer], s.data[ToClient])
	}
	st := c.Stats()
	if st[ToServer].Delivered != uint64(len(req)) || !st[ToServer].Closed || st[ToClient].Closed {
		t.Errorf("stats %+v", st)
	}
}

// TestEvasion is the segmentation evasion case: a payload cut into 1-byte
// segments, shuffled, with duplicates and overlapping larger segments,
// still comes out as exactly the original bytes, once.
func TestEvasion(t *testing.T) {
	want := []byte("GET /cgi-bin/../../../../etc/passwd HTTP/1.1\r\nHost: victim\r\nUser-Agent: () { :; }; /bin/bash -c 'id'\r\n\r\n")
	for trial := range 50 {
		r := rand.New(rand.NewPCG(uint64(trial), 99))
		isn := r.Uint32()
		segs := split(ToServer, isn, want, 1)
		// Duplicates and overlapping runs with the same bytes.
		for range len(want) / 3 {
			i := r.IntN(len(want))
			j := min(len(want), i+1+r.IntN(8))
			segs = append(segs, seg{ToServer, isn + 1 + uint32(i), FlagACK, want[i:j]})
		}
		r.Shuffle(len(segs), func(i, j int) { segs[i], segs[j] = segs[j], segs[i] })
		segs = append([]seg{{ToServer, isn, FlagSYN, nil}}, segs...)
		var c Conn
		s, an := run(t, &c, segs)
		if an != 0 {
			t.Errorf("trial %d: anomaly %v for consistent duplicates", trial, an)
		}
		if !bytes.Equal(s.data[ToServer], want) {
			t.Fatalf("trial %d: got %q", trial, s.data[ToServer])
		}
		if p := c.Stats()[ToServer].Pending; p != 0 {
			t.Errorf("trial %d: %d bytes still pending", trial, p)
		}
	}
}

func TestWraparound(t *testing.T) {
	want := payload(5000)
	for _, isn := range []uint32{0xffffffff - 2500, 0xffffffff, 0xfffffffe, 0xffffff00} {
		segs := append([]seg{{ToServer, isn, FlagSYN, nil}}, split(ToServer, isn, want, 333)...)
		// Reverse the data segments: all out of order across the wrap.
		for i, j := 1, len(segs)-1; i < j; i, j = i+1, j-1 {
			segs[i], segs[j] = segs[j], segs[i]
		}
		var c Conn
		s, an := run(t, &c, segs)
		if an != 0 || !bytes.Equal(s.data[ToServer], want) {
			t.Fatalf("isn %#x: anomaly %v, got %d bytes equal=%v", isn, an, len(s.data[ToServer]), bytes.Equal(s.data[ToServer], want))
		}
	}
}

func TestOverlapDifferent(t *testing.T) {
	const isn = 500
	tests := []struct {
		name string
		segs []seg
		want string
	}{
		{
			name: "retransmission of delivered bytes with other content",
			segs: []seg{
				{ToServer, isn + 1, FlagACK, []byte("GET /safe")},
				{ToServer, isn + 1 + 5, FlagACK, []byte("evil")},
				{ToServer, isn + 1 + 9, FlagACK, []byte(" HTTP/1.0")},
			},
			want: "GET /safe HTTP/1.0",
		},
		{
			name: "pending segments overlapping with other content: first wins",
			segs: []seg{
				{ToServer, isn + 1 + 4, FlagACK, []byte("/safe")},
				{ToServer, isn + 1 + 4, FlagACK, []byte("/evil")},
				{ToServer, isn + 1, FlagACK, []byte("GET ")},
			},
			want: "GET /safe",
		},
		{
			name: "gap filler overlapping pending data with other content",
			segs: []seg{
				{ToServer, isn + 1 + 6, FlagACK, []byte("fe")},
				{ToServer, isn + 1, FlagACK, []byte("GET /sxxx")},
			},
			want: "GET /sfex",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Conn
			c.Segment(ToServer, isn, FlagSYN, nil, nil)
			s, an := run(t, &c, tt.segs)
			if an&AnomalyOverlap == 0 {
				t.Errorf("no overlap anomaly")
			}
			if string(s.data[ToServer]) != tt.want {
				t.Errorf("got %q, want %q", s.data[ToServer], tt.want)
			}
			if c.Stats()[ToServer].Overlaps != 1 {
				t.Errorf("overlaps %d", c.Stats()[ToServer].Overlaps)
			}
		})
	}
}

func TestPendingLimit(t *testing.T) {
	var c Conn
	c.Reset(Config{MaxPending: 100})
	s := &sink{t: t}
	c.Segment(ToServer, 0, FlagSYN, nil, s.deliver)
	if an := c.Segment(ToServer, 1+50, FlagACK, bytes.Repeat([]byte("b"), 40), s.deliver); an != 0 {
		t.Fatalf("within the window: %v", an)
	}
	// Reaches 20 bytes beyond the window: those are dropped.
	if an := c.Segment(ToServer, 1+90, FlagACK, bytes.Repeat([]byte("c"), 30), s.deliver); an != AnomalyPending {
		t.Fatalf("beyond the window: %v", an)
	}
	if an := c.Segment(ToServer, 1+500, FlagACK, []byte("far"), s.deliver); an != AnomalyPending {
		t.Fatalf("far beyond: %v", an)
	}
	st := c.Stats()[ToServer]
	if st.Dropped != 23 || st.Pending != 50 {
		t.Fatalf("stats %+v", st)
	}
	c.Segment(ToServer, 1, FlagACK, bytes.Repeat([]byte("a"), 50), s.deliver)
	want := string(bytes.Repeat([]byte("a"), 50)) + string(bytes.Repeat([]byte("b"), 40)) + string(bytes.Repeat([]byte("c"), 10))
	if string(s.data[ToServer]) != want {
		t.Fatalf("got %q", s.data[ToServer])
	}
}

func TestDepth(t *testing.T) {
	var c Conn
	c.Reset(Config{Depth: 10})
	want := payload(25)
	segs := append([]seg{{ToServer, 9, FlagSYN, nil}}, split(ToServer, 9, want, 4)...)
	segs = append(segs, seg{ToServer, 9 + 26, FlagFIN | FlagACK, nil})
	s, _ := run(t, &c, segs)
	if !bytes.Equal(s.data[ToServer], want[:10]) {
		t.Fatalf("got %d bytes", len(s.data[ToServer]))
	}
	st := c.Stats()[ToServer]
	if st.BeyondDepth != 15 || !st.Closed {
		t.Fatalf("stats %+v", st)
	}
}

func TestMidStream(t *testing.T) {
	var c Conn
	s := &sink{t: t}
	// No SYN seen: the first segment's sequence number is offset 0; data
	// before it is ignored.
	c.Segment(ToClient, 123456, FlagACK, []byte("world"), s.deliver)
	c.Segment(ToClient, 123456-6, FlagACK, []byte("hello "), s.deliver)
	c.Segment(ToClient, 123456+5, FlagACK|FlagFIN, []byte("!"), s.deliver)
	if an := c.Segment(ToClient, 123456+6, FlagACK, []byte("late"), s.deliver); an != AnomalyAfterClose {
		t.Errorf("data after FIN: %v", an)
	}
	if string(s.data[ToClient]) != "world!" {
		t.Fatalf("got %q", s.data[ToClient])
	}
	// A pure ACK starts the other direction at its sequence number.
	c.Segment(ToServer, 42, FlagACK, nil, s.deliver)
	c.Segment(ToServer, 42, FlagACK, []byte("x"), s.deliver)
	if string(s.data[ToServer]) != "x" {
		t.Fatalf("to_server %q", s.data[ToServer])
	}
}

func TestRST(t *testing.T) {
	var c Conn
	s := &sink{t: t}
	c.Segment(ToServer, 0, FlagSYN, nil, s.deliver)
	c.Segment(ToServer, 1, FlagRST, nil, s.deliver)
	if !c.Closed(ToServer) || c.Closed(ToClient) {
		t.Fatal("RST did not end its direction only")
	}
	if an := c.Segment(ToServer, 1, FlagACK, []byte("x"), s.deliver); an != AnomalyAfterClose {
		t.Fatalf("after RST: %v", an)
	}
}

// TestHistoryRing checks retransmission comparison across the history
// ring's wrap, and that retransmissions older than it pass unchecked.
func TestHistoryRing(t *testing.T) {
	var c Conn
	for round := range 2 { // the second round reuses the grown buffers
		t.Run(fmt.Sprint("round", round), func(t *testing.T) { historyRing(t, &c) })
	}
}

func historyRing(t *testing.T, c *Conn) {
	c.Reset(Config{History: 100})
	want := payload(1000)
	segs := append([]seg{{ToServer, 0, FlagSYN, nil}}, split(ToServer, 0, want, 37)...)
	s, _ := run(t, c, segs)
	if !bytes.Equal(s.data[ToServer], want) {
		t.Fatal("stream differs")
	}
	if an := c.Segment(ToServer, 1+920, FlagACK, want[920:990], s.deliver); an != 0 {
		t.Errorf("same retransmission: %v", an)
	}
	bad := bytes.Clone(want[920:990])
	bad[60] ^= 1
	if an := c.Segment(ToServer, 1+920, FlagACK, bad, s.deliver); an != AnomalyOverlap {
		t.Errorf("changed retransmission: %v", an)
	}
	old := bytes.Clone(want[10:20])
	old[0] ^= 1
	if an := c.Segment(ToServer, 1+10, FlagACK, old, s.deliver); an != 0 {
		t.Errorf("retransmission older than the history: %v", an)
	}
}

func TestInOrderNoAllocs(t *testing.T) {
	var c Conn
	data := payload(1460)
	seq := uint32(1)
	c.Segment(ToServer, 0, FlagSYN, nil, nil)
	n := 0
	deliver := func(_ Dir, _ uint64, b []byte) { n += len(b) }
	// Warm up the history to its full size.
	for range 64 {
		c.Segment(ToServer, seq, FlagACK, data, deliver)
		seq += uint32(len(data))
	}
	allocs := testing.AllocsPerRun(200, func() {
		c.Segment(ToServer, seq, FlagACK, data, deliver)
		seq += uint32(len(data))
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per in-order segment", allocs)
	}
}

func ExampleConn_Segment() {
	var c Conn
	print := func(dir Dir, off uint64, b []byte) { fmt.Printf("%v %d %q\n", dir, off, b) }
	c.Segment(ToServer, 100, FlagSYN, nil, print)
	c.Segment(ToServer, 105, FlagACK, []byte("o wo"), print)
	c.Segment(ToServer, 101, FlagACK, []byte("hell"), print)
	c.Segment(ToServer, 109, FlagACK, []byte("rld"), print)
	// Output:
	// to_server 0 "hello wo"
	// to_server 8 "rld"
}
