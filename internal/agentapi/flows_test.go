package agentapi

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bulkhead/bulkhead/internal/flow"
)

func TestFlowRecordRoundTrip(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		r    flow.Record
	}{
		{"open tcp connection", flow.Record{
			ID: "h1/0000018e00000000/0000002a", Kind: flow.KindUpdate, Host: "h1",
			Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.1.1"), Proto: 6,
			SrcPort: 40000, DstPort: 5432, SrcWorkload: "web-1", DstWorkload: "db-1",
			SrcBytes: 1 << 40, SrcPackets: 1 << 33, DstBytes: 50, DstPackets: 1,
			Start: start, Seen: start.Add(10 * time.Second), RuleID: 1<<24 - 1, Verdict: flow.Allow,
		}},
		{"tls connection the l7 reader classified", flow.Record{
			ID: "h1/0000018e00000000/0000002b", Kind: flow.KindEnd, Host: "h1",
			Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.1.1"), Proto: 6,
			SrcPort: 40001, DstPort: 443, SrcWorkload: "web-1", SrcBytes: 900, SrcPackets: 9, DstBytes: 5000, DstPackets: 8,
			Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second), RuleID: 12, Verdict: flow.Allow,
			App: "APP_HTTPS", TLSVersion: "1.3", ServerName: "shop.example.com",
		}},
		{"ended ipv6 udp", flow.Record{
			ID: "h1/x/1", Kind: flow.KindEnd, Host: "h1",
			Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Proto: 17,
			SrcPort: 65535, DstPort: 53, DstWorkload: "dns",
			SrcBytes: 80, SrcPackets: 1, DstBytes: 120, DstPackets: 1,
			Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second), RuleID: 7, Verdict: flow.Allow,
		}},
		{"icmp drop", flow.Record{
			ID: "h1/drop/1", Kind: flow.KindDrop, Host: "h1",
			Src: netip.MustParseAddr("192.0.2.9"), Dst: netip.MustParseAddr("10.0.1.1"), Proto: 1,
			ICMPType: 8, ICMPCode: 255, DstWorkload: "db-1", SrcBytes: 3360, SrcPackets: 40,
			Start: start, End: start.Add(5 * time.Second), Seen: start.Add(5 * time.Second), RuleID: 99, Verdict: flow.Drop,
		}},
		{"icmpv6 reject", flow.Record{
			ID: "h1/drop/2", Kind: flow.KindDrop, Host: "h1",
			Src: netip.MustParseAddr("fd00::9"), Dst: netip.MustParseAddr("fd00::1"), Proto: 58,
			ICMPType: 128, SrcPackets: 1, Start: start, End: start, Seen: start, RuleID: 3, Verdict: flow.Reject,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through the wire bytes, as gRPC carries it.
			wire, err := proto.Marshal(NewFlowRecord(&tt.r))
			if err != nil {
				t.Fatal(err)
			}
			var m FlowRecord
			if err := proto.Unmarshal(wire, &m); err != nil {
				t.Fatal(err)
			}
			got, err := m.Record(tt.r.Host)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.r) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tt.r)
			}
		})
	}
}

func TestFlowRecordHostFromCaller(t *testing.T) {
	r := flow.Record{ID: "a/1", Kind: flow.KindEnd, Host: "spoofed", Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Verdict: flow.Allow}
	m := NewFlowRecord(&r)
	got, err := m.Record("h1")
	if err != nil || got.Host != "h1" {
		t.Errorf("host %q (%v), want h1 from the caller", got.Host, err)
	}
}

func TestFlowRecordRefused(t *testing.T) {
	good := func() *FlowRecord {
		return &FlowRecord{Id: "x", Kind: FlowKind_FLOW_KIND_END, SrcIp: []byte{10, 0, 0, 1}, DstIp: []byte{10, 0, 0, 2}, Protocol: 6, Verdict: Verdict_VERDICT_ALLOW}
	}
	if _, err := good().Record("h"); err != nil {
		t.Fatalf("the good record: %v", err)
	}
	mapped := good()
	mapped.SrcIp = netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()
	if r, err := mapped.Record("h"); err != nil || r.Src != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("mapped address: %v, %v; want 10.0.0.1", r.Src, err)
	}
	for _, tt := range []struct {
		mod  func(*FlowRecord)
		want string
	}{
		{func(m *FlowRecord) { m.SrcIp = []byte{1, 2, 3} }, "src_ip: 3 bytes"},
		{func(m *FlowRecord) { m.DstIp = nil }, "dst_ip: 0 bytes"},
		{func(m *FlowRecord) { m.Protocol = 256 }, "protocol 256"},
		{func(m *FlowRecord) { m.SrcPort = 65536 }, "src_port 65536"},
		{func(m *FlowRecord) { m.DstPort = 1 << 20 }, "dst_port"},
		{func(m *FlowRecord) { m.IcmpType = 300 }, "icmp_type 300"},
		{func(m *FlowRecord) { m.IcmpCode = 256 }, "icmp_code 256"},
		{func(m *FlowRecord) { m.Kind = FlowKind_FLOW_KIND_UNSPECIFIED }, "kind"},
		{func(m *FlowRecord) { m.Kind = 9 }, "kind"},
		{func(m *FlowRecord) { m.Verdict = Verdict_VERDICT_UNSPECIFIED }, "verdict"},
		{func(m *FlowRecord) { m.ServerName = strings.Repeat("a", 254) }, "server_name: 254 bytes"},
		{func(m *FlowRecord) { m.App = strings.Repeat("A", 300) }, "app: 300 bytes"},
	} {
		m := good()
		tt.mod(m)
		if _, err := m.Record("h"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want an error saying %q", m, err, tt.want)
		}
	}

	// One bad record does not sink its batch.
	bad := good()
	bad.SrcIp = nil
	b := &FlowBatch{Records: []*FlowRecord{good(), bad, good()}}
	recs, n, err := b.FlowRecords("h")
	if len(recs) != 2 || n != 1 || err == nil {
		t.Errorf("batch with one bad record: %d records, %d bad, %v", len(recs), n, err)
	}
}

// TestEnumsMatchFlow keeps the wire enums and internal/flow's in step.
func TestEnumsMatchFlow(t *testing.T) {
	for k := flow.KindUpdate; k <= flow.KindDrop; k++ {
		if name := FlowKind(k).String(); name != "FLOW_KIND_"+strings.ToUpper(k.String()) {
			t.Errorf("flow kind %v is %s on the wire", k, name)
		}
	}
	for v := flow.Allow; v <= flow.Reject; v++ {
		if name := Verdict(v).String(); name != "VERDICT_"+strings.ToUpper(v.String()) {
			t.Errorf("verdict %v is %s on the wire", v, name)
		}
	}
	if n := len(FlowKind_name); n != int(flow.KindDrop)+1 {
		t.Errorf("%d wire flow kinds, want %d", n, flow.KindDrop+1)
	}
	if n := len(Verdict_name); n != int(flow.Reject)+1 {
		t.Errorf("%d wire verdicts, want %d", n, flow.Reject+1)
	}
}
