package ipfix

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// A small encoder for IPFIX (RFC 7011) and NetFlow v9 (RFC 3954), so the
// tests feed the collector the bytes an exporter would send.

type field struct {
	id, length uint16
	pen        uint32 // IPFIX only; sets the enterprise bit
}

func be16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func be64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// set frames a set (IPFIX) or FlowSet (v9) body, padded to 4 bytes.
func set(id uint16, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	b := be16(nil, id)
	b = be16(b, uint16(4+len(body)))
	return append(b, body...)
}

func templateRecord(id uint16, fields ...field) []byte {
	b := be16(nil, id)
	b = be16(b, uint16(len(fields)))
	for _, f := range fields {
		if f.pen != 0 {
			b = be16(b, f.id|0x8000)
			b = be16(b, f.length)
			b = be32(b, f.pen)
			continue
		}
		b = be16(b, f.id)
		b = be16(b, f.length)
	}
	return b
}

func ipfixMessage(export, seq, domain uint32, sets ...[]byte) []byte {
	var body []byte
	for _, s := range sets {
		body = append(body, s...)
	}
	b := be16(nil, 10)
	b = be16(b, uint16(16+len(body)))
	b = be32(b, export)
	b = be32(b, seq)
	b = be32(b, domain)
	return append(b, body...)
}

func v9Message(uptime, secs, seq, source uint32, records uint16, sets ...[]byte) []byte {
	b := be16(nil, 9)
	b = be16(b, records)
	b = be32(b, uptime)
	b = be32(b, secs)
	b = be32(b, seq)
	b = be32(b, source)
	for _, s := range sets {
		b = append(b, s...)
	}
	return b
}

var v4Template = []field{
	{id: ieSrcIPv4, length: 4}, {id: ieDstIPv4, length: 4}, {id: ieProtocol, length: 1},
	{id: ieSrcPort, length: 2}, {id: ieDstPort, length: 2},
	{id: ieOctetDelta, length: 8}, {id: iePacketDelta, length: 8},
	{id: ieStartMillis, length: 8}, {id: ieEndMillis, length: 8},
}

func v4Record(src, dst string, proto uint8, sport, dport uint16, bytes, pkts uint64, start, end time.Time) []byte {
	b := netip.MustParseAddr(src).AsSlice()
	b = append(b, netip.MustParseAddr(dst).AsSlice()...)
	b = append(b, proto)
	b = be16(b, sport)
	b = be16(b, dport)
	b = be64(b, bytes)
	b = be64(b, pkts)
	b = be64(b, uint64(start.UnixMilli()))
	return be64(b, uint64(end.UnixMilli()))
}

var (
	t0     = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	export = uint32(t0.Add(time.Minute).Unix())
)

func ipfixV4Packet(seq uint32, withTemplate bool, n int) []byte {
	var data []byte
	for i := range n {
		data = append(data, v4Record("10.0.1.5", "10.0.2.7", 6, uint16(40000+i), 443,
			uint64(1000*(i+1)), uint64(i+1), t0, t0.Add(30*time.Second))...)
	}
	sets := [][]byte{set(256, data)}
	if withTemplate {
		sets = append([][]byte{set(2, templateRecord(256, v4Template...))}, sets...)
	}
	return ipfixMessage(export, seq, 7, sets...)
}

// serve runs a collector on 127.0.0.1:0 and returns its address and the
// batches its sink receives.
func serve(t *testing.T) (*Collector, net.Addr, <-chan []flow.Record) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{}
	out := make(chan []flow.Record, 16)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, conn, func(rs []flow.Record) error {
			out <- append([]flow.Record(nil), rs...)
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c, conn.LocalAddr(), out
}

func send(t *testing.T, conn net.Conn, pkts ...[]byte) {
	t.Helper()
	for _, p := range pkts {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

func dial(t *testing.T, to net.Addr) net.Conn {
	t.Helper()
	conn, err := net.Dial("udp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, out <-chan []flow.Record) []flow.Record {
	t.Helper()
	select {
	case rs := <-out:
		return rs
	case <-time.After(5 * time.Second):
		t.Fatal("no records within 5s")
		return nil
	}
}

// waitStats polls until the collector has counted n datagrams: UDP gives
// no other signal that a datagram producing no records has arrived.
func waitStats(t *testing.T, c *Collector, packets uint64) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s := c.Stats(); s.Packets >= packets {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("collector saw %d datagrams, want %d", c.Stats().Packets, packets)
	return Stats{}
}

func TestIPFIXOverUDP(t *testing.T) {
	c, addr, out := serve(t)
	conn := dial(t, addr)
	send(t, conn, ipfixV4Packet(1, true, 2))
	rs := receive(t, out)
	if len(rs) != 2 {
		t.Fatalf("got %d records, want 2", len(rs))
	}
	exporter := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	r := rs[1]
	want := flow.Record{
		Kind: flow.KindEnd, Host: "ipfix/" + exporter.String(),
		Src: netip.MustParseAddr("10.0.1.5"), Dst: netip.MustParseAddr("10.0.2.7"),
		Proto: 6, SrcPort: 40001, DstPort: 443,
		SrcBytes: 2000, SrcPackets: 2,
		Start: t0, End: t0.Add(30 * time.Second), Seen: t0.Add(30 * time.Second),
		Verdict: flow.Allow,
	}
	want.ID = r.ID
	if r != want {
		t.Errorf("record\n got %+v\nwant %+v", r, want)
	}
	if !strings.HasPrefix(r.ID, "ipfix/127.0.0.1/00000007/") || rs[0].ID == rs[1].ID {
		t.Errorf("IDs %q, %q: want exporter and domain first, distinct per 5-tuple", rs[0].ID, rs[1].ID)
	}

	// The template is remembered: a later data-only datagram decodes.
	send(t, conn, ipfixV4Packet(2, false, 3))
	if rs := receive(t, out); len(rs) != 3 {
		t.Fatalf("data-only datagram: got %d records, want 3", len(rs))
	}
	if s := c.Stats(); s.Records != 5 || s.Malformed != 0 || s.NoTemplate != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestIPFIXv6TotalsBiflowAndNTPTimes(t *testing.T) {
	tmpl := templateRecord(300,
		field{id: ieSrcIPv6, length: 16}, field{id: ieDstIPv6, length: 16},
		field{id: ieProtocol, length: 1}, field{id: ieSrcPort, length: 2}, field{id: ieDstPort, length: 2},
		field{id: ieOctetTotal, length: 4}, // reduced-size encoding
		field{id: iePacketTotal, length: 8},
		field{id: ieOctetTotal, length: 8, pen: penReverse},
		field{id: iePacketTotal, length: 8, pen: penReverse},
		field{id: ieStartMicros, length: 8}, field{id: ieEndMicros, length: 8},
	)
	ntp := func(t time.Time) uint64 {
		return uint64(t.Unix()+ntpEpochOffset)<<32 | uint64(t.Nanosecond())<<32/1e9
	}
	start, end := t0.Add(250*time.Millisecond), t0.Add(2*time.Second)
	data := netip.MustParseAddr("2001:db8::1").AsSlice()
	data = append(data, netip.MustParseAddr("2001:db8::2").AsSlice()...)
	data = append(data, 17)
	data = be16(data, 5353)
	data = be16(data, 53)
	data = be32(data, 900)
	data = be64(data, 10)
	data = be64(data, 4000)
	data = be64(data, 9)
	data = be64(data, ntp(start))
	data = be64(data, ntp(end))

	var d Decoder
	from := netip.MustParseAddrPort("[2001:db8::fe]:4739")
	rs, err := d.Decode(nil, from, ipfixMessage(export, 1, 1, set(2, tmpl), set(300, data)), time.Now())
	if err != nil || len(rs) != 1 {
		t.Fatalf("Decode: %d records, %v", len(rs), err)
	}
	r := rs[0]
	if r.Src.String() != "2001:db8::1" || r.Dst.String() != "2001:db8::2" || r.Proto != 17 || r.SrcPort != 5353 || r.DstPort != 53 {
		t.Errorf("5-tuple: %+v", r)
	}
	if r.SrcBytes != 900 || r.SrcPackets != 10 || r.DstBytes != 4000 || r.DstPackets != 9 {
		t.Errorf("counters: %+v", r)
	}
	if r.Start.Sub(start).Abs() > time.Microsecond || r.End.Sub(end).Abs() > time.Microsecond {
		t.Errorf("times %v-%v, want %v-%v", r.Start, r.End, start, end)
	}
	if r.Host != "ipfix/2001:db8::fe" {
		t.Errorf("host %q", r.Host)
	}
	// Total counters: one ID per flow, whatever the report's end.
	if strings.Count(r.ID, "/") != 8 {
		t.Errorf("ID %q should not carry the end time", r.ID)
	}
}

func TestNetFlowV9OverUDP(t *testing.T) {
	c, addr, out := serve(t)
	conn := dial(t, addr)
	tmpl := templateRecord(260,
		field{id: ieSrcIPv4, length: 4}, field{id: ieDstIPv4, length: 4},
		field{id: ieProtocol, length: 1}, field{id: ieSrcPort, length: 2}, field{id: ieDstPort, length: 2},
		field{id: ieOctetDelta, length: 4}, field{id: iePacketDelta, length: 4},
		field{id: ieFirstSysUp, length: 4}, field{id: ieLastSysUp, length: 4},
	)
	// The exporter has been up 1,000,000 ms at export time t0+60s; the
	// flow ran from uptime 930,000 to 950,000: t0-10s .. t0+10s.
	const uptime = 1_000_000
	data := netip.MustParseAddr("192.168.1.10").AsSlice()
	data = append(data, netip.MustParseAddr("192.168.1.20").AsSlice()...)
	data = append(data, 6)
	data = be16(data, 51000)
	data = be16(data, 5432)
	data = be32(data, 123456)
	data = be32(data, 321)
	data = be32(data, 930_000)
	data = be32(data, 950_000)
	send(t, conn, v9Message(uptime, export, 1, 42, 2, set(0, tmpl), set(260, data)))
	rs := receive(t, out)
	if len(rs) != 1 {
		t.Fatalf("got %d records, want 1", len(rs))
	}
	r := rs[0]
	if r.Src.String() != "192.168.1.10" || r.DstPort != 5432 || r.SrcBytes != 123456 || r.SrcPackets != 321 {
		t.Errorf("record %+v", r)
	}
	if !r.Start.Equal(t0.Add(-10*time.Second)) || !r.End.Equal(t0.Add(10*time.Second)) {
		t.Errorf("times %v-%v, want %v-%v", r.Start, r.End, t0.Add(-10*time.Second), t0.Add(10*time.Second))
	}
	if !strings.Contains(r.ID, "/0000002a/") {
		t.Errorf("ID %q: want the source id", r.ID)
	}
	if s := c.Stats(); s.Records != 1 || s.Malformed != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Data that arrives before its template is dropped and counted; once the
// template comes, data decodes.
func TestDataBeforeTemplateIsCounted(t *testing.T) {
	c, addr, out := serve(t)
	conn := dial(t, addr)
	send(t, conn, ipfixV4Packet(1, false, 4))
	if s := waitStats(t, c, 1); s.NoTemplate != 1 || s.Records != 0 || s.Malformed != 0 {
		t.Errorf("stats after data-only %+v: want NoTemplate 1", s)
	}
	send(t, conn, ipfixMessage(export, 2, 7, set(2, templateRecord(256, v4Template...))))
	send(t, conn, ipfixV4Packet(3, false, 4))
	if rs := receive(t, out); len(rs) != 4 {
		t.Fatalf("got %d records, want 4", len(rs))
	}
}

// Templates belong to one exporter and observation domain.
func TestTemplatesPerExporterAndDomain(t *testing.T) {
	var d Decoder
	a := netip.MustParseAddrPort("10.9.0.1:2055")
	b := netip.MustParseAddrPort("10.9.0.2:2055")
	if rs, _ := d.Decode(nil, a, ipfixV4Packet(1, true, 1), t0); len(rs) != 1 {
		t.Fatalf("exporter a: %d records", len(rs))
	}
	if rs, _ := d.Decode(nil, b, ipfixV4Packet(1, false, 1), t0); len(rs) != 0 {
		t.Errorf("exporter b used a's template")
	}
	other := ipfixV4Packet(2, false, 1)
	binary.BigEndian.PutUint32(other[12:], 8) // another observation domain
	if rs, _ := d.Decode(nil, a, other, t0); len(rs) != 0 {
		t.Errorf("domain 8 used domain 7's template")
	}
	if s := d.Stats(); s.NoTemplate != 2 {
		t.Errorf("NoTemplate %d, want 2", s.NoTemplate)
	}
}

func TestMalformed(t *testing.T) {
	good := ipfixV4Packet(1, true, 2)
	zeroLen := ipfixMessage(export, 1, 1,
		set(2, templateRecord(400, field{id: ieSrcIPv4, length: 0})),
		set(400, []byte{1, 2, 3, 4}))
	tests := []struct {
		name      string
		pkt       []byte
		malformed bool
	}{
		{"empty", nil, true},
		{"version 5", []byte{0, 5, 0, 1}, true},
		{"truncated header", good[:10], true},
		{"truncated set", good[:40], true},
		{"set length below header", append(good[:16:16], 0, 2, 0, 1), true},
		{"template count beyond data", ipfixMessage(export, 1, 1, set(2, []byte{1, 0, 0xff, 0xff})), true},
		{"zero-length template does not spin", zeroLen, false},
		{"garbage", []byte(strings.Repeat("\xff", 200)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			done := make(chan struct{})
			go func() {
				defer close(done)
				d.Decode(nil, netip.MustParseAddrPort("10.0.0.1:1"), tt.pkt, t0)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Decode did not return")
			}
			if got := d.Stats().Malformed == 1; got != tt.malformed {
				t.Errorf("malformed = %v, want %v (stats %+v)", got, tt.malformed, d.Stats())
			}
		})
	}
}

// The collector keeps serving after malformed datagrams.
func TestCollectorSurvivesGarbage(t *testing.T) {
	c, addr, out := serve(t)
	conn := dial(t, addr)
	send(t, conn, []byte{0, 10, 0}, []byte("hello"), ipfixV4Packet(1, true, 1))
	if rs := receive(t, out); len(rs) != 1 {
		t.Fatalf("got %d records", len(rs))
	}
	if s := c.Stats(); s.Malformed != 2 {
		t.Errorf("Malformed %d, want 2", s.Malformed)
	}
}

func TestRunListens(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{Listen: "127.0.0.1:0"}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func([]flow.Record) error { return nil }) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := (&Collector{Listen: "256.0.0.1:1"}).Run(context.Background(), nil); err == nil || !strings.HasPrefix(err.Error(), "ipfix: listen") {
		t.Errorf("bad address: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(ipfixV4Packet(1, true, 2))
	f.Add(ipfixV4Packet(1, false, 2))
	f.Add(v9Message(1000, export, 1, 1, 2, set(0, templateRecord(256, v4Template...)), set(256, v4Record("1.1.1.1", "2.2.2.2", 6, 1, 2, 3, 4, t0, t0))))
	f.Add([]byte{0, 10, 0, 16})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var d Decoder
		from := netip.MustParseAddrPort("10.0.0.1:4739")
		// Twice: the first call may teach templates the second uses.
		for range 2 {
			rs, _ := d.Decode(nil, from, pkt, t0)
			for _, r := range rs {
				if !r.Src.IsValid() || !r.Dst.IsValid() || r.ID == "" || r.Kind != flow.KindEnd {
					t.Fatalf("bad record %+v", r)
				}
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	// 30 records of 45 bytes: a full 1400-byte datagram, as exporters send.
	const n = 30
	pkt := ipfixV4Packet(2, false, n)
	var d Decoder
	from := netip.MustParseAddrPort("10.0.0.1:4739")
	d.Decode(nil, from, ipfixV4Packet(1, true, 1), t0)
	var rs []flow.Record
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		rs, _ = d.Decode(rs[:0], from, pkt, t0)
		if len(rs) != n {
			b.Fatalf("%d records", len(rs))
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
