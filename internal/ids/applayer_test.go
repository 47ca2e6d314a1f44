package ids

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

func parse(t testing.TB, texts ...string) []*rules.Rule {
	t.Helper()
	var out []*rules.Rule
	for _, s := range texts {
		r, err := rules.Parse(s, nil)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		out = append(out, r)
	}
	return out
}

var httpRules = []string{
	`alert http any any -> any any (msg:"passwd in the URI"; flow:established,to_server; http.uri; content:"/etc/passwd"; classtype:attempted-recon; sid:3000001; rev:2;)`,
	`drop http any any -> any any (msg:"curl to the shop"; flow:to_server; http.method; content:"GET"; http.host; content:"shop.example"; http.user_agent; content:"curl/"; startswith; sid:3000002; rev:1;)`,
	// Payload and sticky buffer in one rule: the payload part looks at
	// the transaction's stream.
	`alert http any any -> any any (msg:"mixed"; content:"HTTP/1.1|0d 0a|Host"; http.uri; content:"file="; sid:3000003; rev:1;)`,
	`alert http any any -> any any (msg:"not this"; http.uri; content:"/admin"; sid:3000004; rev:1;)`,
	`alert http any any -> any any (msg:"server error"; flow:to_client; http.stat_code; content:"500"; sid:3000005; rev:1;)`,
}

// An exploit split into 1-byte, shuffled, duplicated and overlapping
// segments still yields the HTTP transaction, and its rules match once.
func TestHTTPSegmentationEvasion(t *testing.T) {
	e := compileOne(t, parse(t, httpRules...)...)
	resp := "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
	for seed := uint64(1); seed <= 10; seed++ {
		k := newConn(t, 42000+uint16(seed), 80)
		pkts := k.handshake()
		segs := evasive(exploitRequest, seed)
		for _, s := range segs {
			pkts = append(pkts, k.toServer(s.off, s.data))
		}
		pkts = append(pkts, k.toClient(0, []byte(resp)))

		alerts, _ := run(t, e, false, pkts...)
		got := sids(alerts)
		slices.Sort(got)
		if !slices.Equal(got, []uint32{3000001, 3000002, 3000003, 3000005}) {
			t.Fatalf("seed %d: alerts %v, want [3000001 3000002 3000003 3000005]", seed, got)
		}
		for _, a := range alerts {
			ev := a.EVE()
			if ev.AppProto != "http" || ev.HTTP == nil {
				t.Fatalf("seed %d: sid %d: app_proto %q http %+v", seed, a.Rule.SID, ev.AppProto, ev.HTTP)
			}
			if a.Rule.SID == 3000001 && (ev.HTTP.URL != "/cgi-bin/show?file=../../../../etc/passwd" || ev.HTTP.Hostname != "shop.example" || ev.Alert.Action != "allowed") {
				t.Errorf("seed %d: EVE http %+v alert %+v", seed, ev.HTTP, ev.Alert)
			}
		}

		// Inline: the drop rule blocks the flow on the segment that
		// completed the request; everything after is dropped.
		alerts, vs := run(t, e, true, pkts...)
		gap := 3 + completes(segs, len(exploitRequest))
		for n, v := range vs {
			want := VerdictPass
			if n >= gap {
				want = VerdictDrop
			}
			if v != want {
				t.Fatalf("seed %d inline: packet %d (request completed by %d) verdict %v, want %v", seed, n, gap, v, want)
			}
		}
		if !slices.Contains(sids(alerts), 3000002) || slices.Contains(sids(alerts), 3000005) {
			t.Errorf("seed %d inline: alerts %v (the response is dropped before inspection)", seed, sids(alerts))
		}
	}
}

// A capture written with pcapgo (Ethernet) reads back with the capture's
// timestamps, alerts in capture order.
func TestReadCaptureRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcap")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(fh)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	k := newConn(t, 43000, 80)
	pkts := append(k.handshake(), k.toServer(0, []byte(exploitRequest)), k.toClient(0, []byte("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")))
	eth := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}
	for n, p := range pkts {
		frame := append(append([]byte(nil), eth...), p...)
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(n) * time.Second), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	}
	fh.Close()

	e := compileOne(t, parse(t, httpRules...)...)
	var evs []EVE
	st, err := ReadCapture(path, e, func(a *Alert) { evs = append(evs, a.EVE()) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 5 || st.Flows != 1 || st.Alerts != 4 || len(evs) != 4 {
		t.Fatalf("stats %+v, %d alerts", st, len(evs))
	}
	if evs[3].Alert.SignatureID != 3000005 || evs[3].Timestamp != "2026-11-24T01:00:04.000000+0000" || evs[3].Direction != "to_client" || evs[3].HTTP.Status != 500 {
		t.Errorf("last alert %+v", evs[3])
	}
	if evs[0].Timestamp != "2026-11-24T01:00:03.000000+0000" {
		t.Errorf("first alert at %s", evs[0].Timestamp)
	}
	b, err := json.Marshal(evs[0])
	if err != nil || !strings.Contains(string(b), `"event_type":"alert"`) || !strings.Contains(string(b), `"http":{"hostname":"shop.example"`) {
		t.Errorf("EVE JSON %s %v", b, err)
	}

	if _, err := ReadCapture(filepath.Join(t.TempDir(), "none.pcap"), e, nil); err == nil {
		t.Error("missing capture: no error")
	}
	bad := filepath.Join(t.TempDir(), "bad.pcap")
	os.WriteFile(bad, []byte("not a capture at all"), 0o600)
	if _, err := ReadCapture(bad, e, nil); err == nil || !strings.Contains(err.Error(), "bad.pcap") || !strings.Contains(err.Error(), "not a pcap or pcapng") {
		t.Errorf("not a capture: %v", err)
	}
}

// Two requests in one segment are two transactions: a URI rule alerts on
// each; a request buffer is not matched again on the response.
func TestPipelinedTransactions(t *testing.T) {
	e := compileOne(t, parse(t,
		`alert http any any -> any any (msg:"admin"; http.uri; content:"/admin"; sid:1;)`,
		`alert http any any -> any any (msg:"host"; http.host; content:"shop"; sid:2;)`)...)
	k := newConn(t, 43100, 80)
	two := "GET /admin/a HTTP/1.1\r\nHost: shop\r\n\r\nGET /admin/b HTTP/1.1\r\nHost: shop\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	alerts, _ := run(t, e, true, append(k.handshake(), k.toServer(0, []byte(two)), k.toClient(0, []byte(resp)))...)
	got := sids(alerts)
	slices.Sort(got)
	if !slices.Equal(got, []uint32{1, 1, 2, 2}) {
		t.Errorf("alerts %v, want [1 1 2 2]", got)
	}
}

// An inspector used with two engines in turn (two workloads) keeps
// allocating nothing.
func TestEngineAlternationNoAllocs(t *testing.T) {
	e1 := compileOne(t, anyRule(1, rules.ActionAlert, rules.ProtoTCP, content("nothing-1")))
	e2 := compileOne(t, anyRule(1, rules.ActionAlert, rules.ProtoTCP, content("nothing-2")), anyRule(2, rules.ActionAlert, rules.ProtoUDP, content("x")))
	insp := NewInspector(InspectorConfig{})
	k1, k2 := newConn(t, 43101, 80), newConn(t, 43102, 81)
	for _, p := range append(k1.handshake(), k2.handshake()...) {
		insp.Packet(t0, p, e1, true)
	}
	body := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	var p1, p2 [][]byte
	for j := 0; j < 120; j++ {
		p1 = append(p1, k1.toServer(j*len(body), body))
		p2 = append(p2, k2.toServer(j*len(body), body))
	}
	n := 0
	step := func() {
		insp.Packet(t0, p1[n], e1, true)
		insp.Packet(t0, p2[n], e2, true)
		n++
	}
	for range 10 {
		step()
	}
	if a := testing.AllocsPerRun(100, step); a != 0 {
		t.Errorf("%.1f allocations per pair of packets, want 0", a)
	}
}

// Inline, nothing waits for the protocol's identification: when it comes,
// the window is inspected again so that an "alert http" payload rule
// sees the bytes that came before, without reporting a match twice.
func TestInlineAppProtoRuleSeesEarlierBytes(t *testing.T) {
	e := compileOne(t, parse(t,
		`drop http any any -> any any (msg:"passwd on an http stream"; flow:to_server; content:"/etc/passwd"; sid:1;)`,
		`alert tcp any any -> any any (msg:"GET on any stream"; content:"GET /etc"; sid:2;)`)...)
	k := newConn(t, 43200, 80)
	pkts := append(k.handshake(), k.toServer(0, []byte("GET /etc/passwd")), k.toServer(15, []byte(" HTTP/1.1\r\nHost: x\r\n\r\n")), k.toServer(39, []byte("x")))
	alerts, vs := run(t, e, true, pkts...)
	if got := sids(alerts); !slices.Equal(got, []uint32{2, 1}) || !slices.Equal(vs[3:], []Verdict{VerdictPass, VerdictDrop, VerdictDrop}) {
		t.Errorf("alerts %v verdicts %v, want [2 1] and the drop on the segment that identified HTTP", got, vs)
	}
}
