package dnssnoop

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestParseChain(t *testing.T) {
	msg := response(t, dnsmessage.RCodeSuccess, "WWW.Example.TEST.",
		cname("www.example.test.", 30, "Edge.CDN.test."),
		cname("edge.cdn.test.", 60, "pop1.cdn.test."),
		txt("pop1.cdn.test.", 5, "skip me"),
		a("pop1.cdn.test.", 2, "192.0.2.10"),
		aaaa("pop1.cdn.test.", 3, "2001:db8::10"),
	)
	var ans Answer
	if err := ans.Parse(msg); err != nil {
		t.Fatalf("parse: %v", ans.Describe(err))
	}
	if got := ans.Question.String(); got != "www.example.test" {
		t.Errorf("question %q", got)
	}
	if ans.QType != TypeA || ans.QClass != ClassIN || ans.Header.ID != 0x1234 || !ans.Header.Response {
		t.Errorf("header/question fields: %+v type %d class %d", ans.Header, ans.QType, ans.QClass)
	}
	type flat struct {
		name   string
		typ    uint16
		ttl    uint32
		addr   netip.Addr
		target string
	}
	want := []flat{
		{"www.example.test", TypeCNAME, 30, netip.Addr{}, "edge.cdn.test"},
		{"edge.cdn.test", TypeCNAME, 60, netip.Addr{}, "pop1.cdn.test"},
		{"pop1.cdn.test", TypeA, 2, netip.MustParseAddr("192.0.2.10"), ""},
		{"pop1.cdn.test", TypeAAAA, 3, netip.MustParseAddr("2001:db8::10"), ""},
	}
	if len(ans.Records) != len(want) {
		t.Fatalf("%d records, want %d", len(ans.Records), len(want))
	}
	for i, r := range ans.Records {
		got := flat{r.Name.String(), r.Type, r.TTL, r.Addr, r.Target.String()}
		if got != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, got, want[i])
		}
	}
	if ans.p.Skipped() != 1 {
		t.Errorf("skipped %d, want 1 (the TXT)", ans.p.Skipped())
	}
}

func TestParseManyRecords(t *testing.T) {
	var recs []rec
	for i := range MaxRecords + 5 {
		recs = append(recs, a("many.example.test.", 60, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()))
	}
	var ans Answer
	if err := ans.Parse(response(t, 0, "many.example.test.", recs...)); err != nil {
		t.Fatal(err)
	}
	if len(ans.Records) != MaxRecords || ans.Dropped != 5 {
		t.Errorf("%d records, %d dropped; want %d, 5", len(ans.Records), ans.Dropped, MaxRecords)
	}
}

// hdr is a response header with the given counts.
func hdr(qd, an uint16) []byte {
	h := make([]byte, 12)
	binary.BigEndian.PutUint16(h[2:], 0x8180)
	binary.BigEndian.PutUint16(h[4:], qd)
	binary.BigEndian.PutUint16(h[6:], an)
	return h
}

// question is "x.test" A IN, uncompressed, at offset 12.
var question = []byte{1, 'x', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}

func rr(name []byte, typ uint16, rdata []byte) []byte {
	b := append([]byte(nil), name...)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint32(b, 60)
	b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
	return append(b, rdata...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestParseHostile(t *testing.T) {
	ptr := func(off int) []byte { return []byte{0xc0 | byte(off>>8), byte(off)} }
	longName := func(labels int) []byte {
		var b []byte
		for range labels {
			b = append(b, 63)
			for range 63 {
				b = append(b, 'a')
			}
		}
		return append(b, 0)
	}
	query := hdr(1, 0)
	query[2] = 0x01 // QR clear
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short header", hdr(1, 0)[:11], ErrShort},
		{"query", cat(query, question), ErrNotResponse},
		{"no question", hdr(0, 0), ErrNoQuestion},
		{"two questions", cat(hdr(2, 0), question, question), ErrNoQuestion},
		{"counts beyond message", cat(hdr(1, 60000), question), ErrSectionCount},
		{"question name runs off", cat(hdr(1, 0), []byte{9, 'a', 'b', 'c', 'd', 'e'}), ErrShort},
		{"question without type", cat(hdr(1, 0), question[:9]), ErrShort},
		{"pointer to itself", cat(hdr(1, 0), ptr(12), []byte{0, 1, 0, 1}), ErrPointer},
		{"pointer forward", cat(hdr(1, 0), ptr(14), question), ErrPointer},
		{"pointer loop through two names", cat(hdr(1, 1), question, rr(cat([]byte{1, 'a'}, ptr(24)), TypeA, []byte{1, 2, 3, 4})), ErrPointer},
		{"pointer past the end", cat(hdr(1, 1), question, rr(ptr(4000), TypeA, []byte{1, 2, 3, 4})), ErrPointer},
		{"truncated pointer", cat(hdr(1, 0), []byte{1, 'a', 1, 'b', 0xc0}), ErrShort},
		{"label type 0x40", cat(hdr(1, 0), []byte{0x41, 'a', 0, 0, 1, 0, 1}), ErrLabelLen},
		{"label type 0x80", cat(hdr(1, 0), []byte{0x81, 'a', 0, 0, 1, 0, 1}), ErrLabelLen},
		{"name over 255 bytes", cat(hdr(1, 0), longName(5), []byte{0, 1, 0, 1}), ErrNameLen},
		{"dot inside a label", cat(hdr(1, 0), []byte{3, 'a', '.', 'b', 0, 0, 1, 0, 1}), ErrNameChar},
		{"control byte in a label", cat(hdr(1, 0), []byte{2, 'a', 0, 0, 0, 1, 0, 1}), ErrNameChar},
		{"rdata beyond message", cat(hdr(1, 1), question, rr(ptr(12), TypeA, []byte{1, 2, 3, 4})[:14]), ErrShort},
		{"A of 5 bytes", cat(hdr(1, 1), question, rr(ptr(12), TypeA, []byte{1, 2, 3, 4, 5})), ErrRDataLen},
		{"AAAA of 4 bytes", cat(hdr(1, 1), question, rr(ptr(12), TypeAAAA, []byte{1, 2, 3, 4})), ErrRDataLen},
		{"CNAME shorter than rdata", cat(hdr(1, 1), question, rr(ptr(12), TypeCNAME, cat(ptr(12), []byte{0}))), ErrRDataLen},
		{"CNAME longer than rdata", cnameLongerThanRData(), ErrRDataLen},
		{"answer header cut", cat(hdr(1, 1), question, ptr(12), []byte{0, 1, 0}), ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ans Answer
			err := ans.Parse(tt.msg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", ans.Describe(err), tt.want)
			}
			if d := ans.Describe(err); d == nil || d.Error() == "" {
				t.Errorf("no description")
			}
		})
	}
}

func TestParseTTLTopBit(t *testing.T) {
	msg := cat(hdr(1, 1), question, rr([]byte{0xc0, 12}, TypeA, []byte{192, 0, 2, 1}))
	binary.BigEndian.PutUint32(msg[len(msg)-10:], 0x80000001)
	var ans Answer
	if err := ans.Parse(msg); err != nil {
		t.Fatal(err)
	}
	if len(ans.Records) != 1 || ans.Records[0].TTL != 0 || ans.Records[0].Name.String() != "x.test" {
		t.Fatalf("records %+v", ans.Records)
	}
}

func TestParseNoAllocs(t *testing.T) {
	msg := response(t, 0, "www.example.test.",
		cname("www.example.test.", 30, "edge.cdn.test."),
		a("edge.cdn.test.", 2, "192.0.2.10"),
		aaaa("edge.cdn.test.", 2, "2001:db8::10"))
	var ans Answer
	ans.Parse(msg)
	if n := testing.AllocsPerRun(1000, func() {
		if err := ans.Parse(msg); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Parse allocates %v times per message", n)
	}
	bad := cat(hdr(1, 0), []byte{0xc0, 12, 0, 1, 0, 1})
	if n := testing.AllocsPerRun(1000, func() { ans.Parse(bad) }); n != 0 {
		t.Errorf("Parse allocates %v times per bad message", n)
	}
}

func BenchmarkParse(b *testing.B) {
	msg := response(b, 0, "www.example.test.",
		cname("www.example.test.", 30, "edge.cdn.test."),
		a("edge.cdn.test.", 20, "192.0.2.10"),
		a("edge.cdn.test.", 20, "192.0.2.11"),
		aaaa("edge.cdn.test.", 20, "2001:db8::10"))
	var ans Answer
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := ans.Parse(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "answers/s")
}

// cnameLongerThanRData declares 2 bytes of rdata for a 3-byte name.
func cnameLongerThanRData() []byte {
	m := cat(hdr(1, 1), question, rr([]byte{0xc0, 12}, TypeCNAME, []byte{1, 'y', 0}))
	binary.BigEndian.PutUint16(m[len(m)-5:], 2)
	return m
}

// TestParseLongestName: a 255-byte name (253 characters) is read, one byte
// more is refused, and the text never overruns Name (found by FuzzParse).
func TestParseLongestName(t *testing.T) {
	build := func(labels ...int) []byte {
		var b []byte
		for _, n := range labels {
			b = append(b, byte(n))
			for range n {
				b = append(b, 'a')
			}
		}
		return cat(hdr(1, 0), append(b, 0, 0, 1, 0, 1))
	}
	var ans Answer
	if err := ans.Parse(build(63, 63, 63, 61)); err != nil {
		t.Fatalf("255-byte name: %v", err)
	}
	if n := len(ans.Question.Bytes()); n != 253 {
		t.Errorf("text length %d, want 253", n)
	}
	for _, labels := range [][]int{{63, 63, 63, 62}, {63, 63, 63, 61, 1}} {
		if err := ans.Parse(build(labels...)); !errors.Is(err, ErrNameLen) {
			t.Errorf("labels %v: %v, want %v", labels, err, ErrNameLen)
		}
	}
}
