package ids

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

const exploitRequest = "GET /cgi-bin/show?file=../../../../etc/passwd HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.0\r\n\r\n"

// segment is one TCP data segment of the client's stream.
type segment struct {
	off  int
	data []byte
}

// evasive splits the request into 1-byte segments, shuffles them, and adds
// duplicates and overlapping retransmissions (same bytes) of 2-5 bytes.
func evasive(req string, seed uint64) []segment {
	r := rand.New(rand.NewPCG(seed, 7))
	var segs []segment
	for i := 0; i < len(req); i++ {
		segs = append(segs, segment{i, []byte(req[i : i+1])})
	}
	for n := 0; n < len(req)/3; n++ {
		off := r.IntN(len(req) - 5)
		segs = append(segs, segment{off, []byte(req[off : off+2+r.IntN(4)])})
	}
	r.Shuffle(len(segs), func(a, b int) { segs[a], segs[b] = segs[b], segs[a] })
	return segs
}

// completes is the index of the segment after which the contiguous
// prefix first covers end bytes.
func completes(segs []segment, end int) int {
	have := make([]bool, end)
	next := 0
	for i, s := range segs {
		for j := range s.data {
			if s.off+j < end {
				have[s.off+j] = true
			}
		}
		for next < end && have[next] {
			next++
		}
		if next == end {
			return i
		}
	}
	return -1
}

func TestSegmentationEvasion(t *testing.T) {
	rule := anyRule(2000001, rules.ActionDrop, rules.ProtoTCP, content("/etc/passwd"))
	rule.Flow = rules.Flow{ToServer: true, Established: true}
	e := compileOne(t, rule)
	end := strings.Index(exploitRequest, "/etc/passwd") + len("/etc/passwd")
	for seed := uint64(1); seed <= 20; seed++ {
		k := newConn(t, 40000+uint16(seed), 80)
		pkts := k.handshake()
		segs := evasive(exploitRequest, seed)
		for _, s := range segs {
			pkts = append(pkts, k.toServer(s.off, s.data))
		}
		pkts = append(pkts, k.toClient(0, []byte("HTTP/1.1 200 OK\r\n\r\n")))

		alerts, _ := run(t, e, false, pkts...)
		if len(alerts) != 1 {
			t.Fatalf("seed %d: %d alerts, want exactly 1", seed, len(alerts))
		}
		if a := alerts[0].EVE(); a.Alert.Action != "allowed" || a.Alert.SignatureID != 2000001 || a.Direction != "to_server" {
			t.Errorf("seed %d: alert %+v", seed, a)
		}

		alerts, vs := run(t, e, true, pkts...)
		if len(alerts) != 1 || !alerts[0].Blocked || alerts[0].EVE().Alert.Action != "blocked" {
			t.Fatalf("seed %d inline: alerts %v", seed, alerts)
		}
		gap := 3 + completes(segs, end)
		for n, v := range vs {
			want := VerdictPass
			if n >= gap {
				want = VerdictDrop
			}
			if v != want {
				t.Fatalf("seed %d inline: packet %d (gap filled by %d) verdict %v, want %v", seed, n, gap, v, want)
			}
		}
	}
}

// A retransmission that rewrites bytes already received is dropped inline
// (the receiver sees what the engine saw) and passes in detect mode.
func TestOverlapRewriteDroppedInline(t *testing.T) {
	e := compileOne(t, anyRule(1, rules.ActionAlert, rules.ProtoTCP, content("/etc/passwd")))
	k := newConn(t, 40001, 80)
	pkts := append(k.handshake(), k.toServer(0, []byte("GET /index.html HTTP/1.1\r\n")), k.toServer(4, []byte("/etc/passwd")))
	_, vs := run(t, e, true, pkts...)
	if vs[4] != VerdictDrop || vs[3] != VerdictPass {
		t.Errorf("inline verdicts %v: the rewriting retransmission should be dropped", vs)
	}
	alerts, vs := run(t, e, false, pkts...)
	if vs[4] != VerdictPass || len(alerts) != 0 {
		t.Errorf("detect: verdicts %v alerts %d", vs, len(alerts))
	}
}

// A pattern split between two deliveries is found (the kept window), and
// found once even when more data follows.
func TestStreamWindowReportsOnce(t *testing.T) {
	e := compileOne(t, anyRule(1, rules.ActionAlert, rules.ProtoTCP, content("0123456789")))
	k := newConn(t, 40002, 9000)
	pkts := append(k.handshake(),
		k.toServer(0, []byte("xxxx01234")),
		k.toServer(9, []byte("56789yyyy")),
		k.toServer(18, []byte("zzzzzzzzzz")),
		k.toServer(28, []byte("zz0123456789")), // a second occurrence: a second alert
	)
	// Inline, each delivery is inspected as it comes.
	alerts, vs := run(t, e, true, pkts...)
	if len(alerts) != 2 || alerts[0].Flow.PktsToServer != 4 || alerts[1].Flow.PktsToServer != 6 || slices.Contains(vs, VerdictDrop) {
		t.Fatalf("inline: %d alerts, want 2 (on the 2nd and 4th data segments)", len(alerts))
	}
	// In detect mode the bytes wait for the protocol's identification
	// (none here: until the flow ends) and are inspected together: one
	// alert per rule per inspection, as Suricata's IDS mode does.
	if alerts, _ = run(t, e, false, pkts...); len(alerts) != 1 {
		t.Fatalf("detect: %d alerts, want 1", len(alerts))
	}
}

// Offsets and depths count from the stream's start, not the segment's.
func TestStreamDepthFromStreamStart(t *testing.T) {
	r := anyRule(1, rules.ActionAlert, rules.ProtoTCP, m("GET ", depth(4)), m("/admin", distance(0)))
	e := compileOne(t, r)
	k := newConn(t, 40003, 80)
	// "GET " at the stream's start, split; then a later segment starting
	// with "GET " (not at the stream's start) must not count.
	pkts := append(k.handshake(), k.toServer(0, []byte("GE")), k.toServer(2, []byte("T /admin HTTP/1.0\r\n\r\n")))
	if alerts, _ := run(t, e, false, pkts...); len(alerts) != 1 {
		t.Errorf("at the start: %d alerts, want 1", len(alerts))
	}
	k = newConn(t, 40004, 80)
	pkts = append(k.handshake(), k.toServer(0, []byte("POST /x HTTP/1.0\r\n\r\n")), k.toServer(20, []byte("GET /admin HTTP/1.0\r\n\r\n")))
	if alerts, _ := run(t, e, false, pkts...); len(alerts) != 0 {
		t.Errorf("later in the stream: %d alerts, want 0", len(alerts))
	}
}

func TestFlowbitsAcrossPacketsAndDirections(t *testing.T) {
	login := anyRule(10, rules.ActionAlert, rules.ProtoTCP, content("LOGIN admin"))
	login.Flowbits = []rules.Flowbit{{Cmd: rules.FlowbitSet, Names: []string{"adm"}}}
	login.Noalert = true
	ok := anyRule(11, rules.ActionAlert, rules.ProtoTCP, content("OK welcome"))
	ok.Flowbits = []rules.Flowbit{{Cmd: rules.FlowbitIsSet, Names: []string{"adm"}}}
	ok.Flow.ToClient = true
	notSet := anyRule(12, rules.ActionAlert, rules.ProtoTCP, content("OK welcome"))
	notSet.Flowbits = []rules.Flowbit{{Cmd: rules.FlowbitIsNotSet, Names: []string{"adm"}}}
	e := compileOne(t, ok, notSet, login) // checkers before the setter: the engine orders them

	k := newConn(t, 40005, 23)
	with := append(k.handshake(), k.toServer(0, []byte("LOGIN admin\r\n")), k.toClient(0, []byte("OK welcome\r\n")))
	alerts, _ := run(t, e, false, with...)
	if got := sids(alerts); !slices.Equal(got, []uint32{11}) {
		t.Errorf("after LOGIN admin: alerts %v, want [11] (10 is noalert)", got)
	}
	k = newConn(t, 40006, 23)
	without := append(k.handshake(), k.toServer(0, []byte("LOGIN guest\r\n")), k.toClient(0, []byte("OK welcome\r\n")))
	alerts, _ = run(t, e, false, without...)
	if got := sids(alerts); !slices.Equal(got, []uint32{12}) {
		t.Errorf("after LOGIN guest: alerts %v, want [12]", got)
	}
}

// Flowbits are kept by name, so a flow keeps them when the engine
// changes (a new signature set version).
func TestFlowSurvivesEngineChange(t *testing.T) {
	set := anyRule(20, rules.ActionAlert, rules.ProtoTCP, content("STAGE1"))
	set.Flowbits = []rules.Flowbit{{Cmd: rules.FlowbitSet, Names: []string{"s1"}}}
	check := anyRule(21, rules.ActionAlert, rules.ProtoTCP, content("STAGE2"))
	check.Flowbits = []rules.Flowbit{{Cmd: rules.FlowbitIsSet, Names: []string{"s1"}}}
	e1 := compileOne(t, set)
	e2 := compileOne(t, set, check)
	var got []*Alert
	insp := NewInspector(InspectorConfig{OnAlert: func(a *Alert) { got = append(got, a) }})
	k := newConn(t, 40007, 7000)
	for _, p := range k.handshake() {
		insp.Packet(t0, p, e1, true)
	}
	insp.Packet(t0, k.toServer(0, []byte("STAGE1 ")), e1, true)
	insp.Packet(t0, k.toServer(7, []byte("STAGE2 ")), e2, true)
	if s := sids(got); !slices.Equal(s, []uint32{20, 21}) {
		t.Errorf("alerts %v, want [20 21]", s)
	}
}

func TestThresholdAndDetectionFilter(t *testing.T) {
	mk := func(sid uint32, th rules.Threshold) *rules.Rule {
		r := anyRule(sid, rules.ActionAlert, rules.ProtoUDP, content("PING"))
		r.Threshold = &th
		return r
	}
	tests := []struct {
		th   rules.Threshold
		want int // alerts for 10 events within the window
	}{
		{rules.Threshold{Type: rules.ThresholdLimit, Track: rules.TrackBySrc, Count: 3, Seconds: 60}, 3},
		{rules.Threshold{Type: rules.ThresholdThreshold, Track: rules.TrackBySrc, Count: 3, Seconds: 60}, 3},
		{rules.Threshold{Type: rules.ThresholdBoth, Track: rules.TrackByDst, Count: 3, Seconds: 60}, 1},
		{rules.Threshold{DetectionFilter: true, Track: rules.TrackBySrc, Count: 4, Seconds: 60}, 6},
		{rules.Threshold{Type: rules.ThresholdLimit, Track: rules.TrackByRule, Count: 1, Seconds: 1}, 2}, // the window restarts after 1 s
	}
	for _, tc := range tests {
		e := compileOne(t, mk(1, tc.th))
		var n int
		insp := NewInspector(InspectorConfig{OnAlert: func(*Alert) { n++ }})
		src := netip.AddrPortFrom(clientAddr, 5000)
		for j := 0; j < 10; j++ {
			// 10 events over 1.8 s.
			insp.Packet(t0.Add(time.Duration(j)*200*time.Millisecond), udpPacket(t, src, netip.AddrPortFrom(serverAddr, 53), []byte("PING")), e, false)
		}
		if n != tc.want {
			t.Errorf("%+v: %d alerts, want %d", tc.th, n, tc.want)
		}
	}
}

func TestPassRuleStopsInspection(t *testing.T) {
	pass := anyRule(30, rules.ActionPass, rules.ProtoTCP, content("TRUSTED"))
	alert := anyRule(31, rules.ActionDrop, rules.ProtoTCP, content("EVIL"))
	e := compileOne(t, alert, pass)
	k := newConn(t, 40008, 8080)
	pkts := append(k.handshake(), k.toServer(0, []byte("TRUSTED ")), k.toServer(8, []byte("EVIL")))
	alerts, vs := run(t, e, true, pkts...)
	if len(alerts) != 0 || slices.Contains(vs, VerdictDrop) {
		t.Errorf("passed flow: alerts %v verdicts %v", sids(alerts), vs)
	}
	k = newConn(t, 40009, 8080)
	pkts = append(k.handshake(), k.toServer(0, []byte("EVIL ")), k.toServer(5, []byte("more")), k.toClient(0, []byte("reply")))
	alerts, vs = run(t, e, true, pkts...)
	if !slices.Equal(sids(alerts), []uint32{31}) || !slices.Equal(vs, []Verdict{VerdictPass, VerdictPass, VerdictPass, VerdictDrop, VerdictDrop, VerdictDrop}) {
		t.Errorf("blocked flow: alerts %v verdicts %v", sids(alerts), vs)
	}
}

func TestRejectVerdict(t *testing.T) {
	e := compileOne(t, anyRule(32, rules.ActionReject, rules.ProtoTCP, content("EVIL")))
	k := newConn(t, 40010, 8080)
	_, vs := run(t, e, true, append(k.handshake(), k.toServer(0, []byte("EVIL")), k.toServer(4, []byte("x")))...)
	if vs[3] != VerdictReject || vs[4] != VerdictDrop {
		t.Errorf("verdicts %v", vs)
	}
}

func TestPacketRules(t *testing.T) {
	dsize := anyRule(40, rules.ActionAlert, rules.ProtoTCP)
	dsize.Dsize = &rules.IntMatch{Cmp: rules.CmpGt, Value: 1000}
	icmp := anyRule(41, rules.ActionAlert, rules.ProtoICMP, content("PAYLOAD"))
	icmp.IType = &rules.IntMatch{Cmp: rules.CmpEq, Value: 8}
	udp := anyRule(42, rules.ActionAlert, rules.ProtoUDP, m("|de ad|", func(x *rules.Match) { x.Pattern = []byte{0xde, 0xad} }))
	udp.DstPorts = &rules.PortSet{Include: []rules.PortRange{{Lo: 9999, Hi: 9999}}}
	ipRule := anyRule(43, rules.ActionAlert, rules.ProtoIP, content("ANYPROTO"))
	ipRule.Dst = &rules.AddrSet{Include: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24")}}
	syn := anyRule(44, rules.ActionAlert, rules.ProtoTCP)
	syn.TCPFlags = &rules.TCPFlags{Flags: 0x02}
	syn.DstPorts = &rules.PortSet{Include: []rules.PortRange{{Lo: 4444, Hi: 4444}}}
	e := compileOne(t, dsize, icmp, udp, ipRule, syn)

	k := newConn(t, 40011, 4444)
	cs := netip.AddrPortFrom(clientAddr, 6000)
	pkts := append(k.handshake(),
		k.toServer(0, make([]byte, 1200)),
		k.toServer(1200, []byte("small")),
		icmpPacket(t, clientAddr, serverAddr, 8, 0, []byte("PAYLOAD")),
		icmpPacket(t, clientAddr, serverAddr, 0, 0, []byte("PAYLOAD")),
		udpPacket(t, cs, netip.AddrPortFrom(serverAddr, 9999), []byte{1, 0xde, 0xad}),
		udpPacket(t, cs, netip.AddrPortFrom(serverAddr, 9998), []byte{1, 0xde, 0xad}),
		udpPacket(t, cs, netip.AddrPortFrom(serverAddr, 9997), []byte("ANYPROTO")),
		udpPacket(t, netip.AddrPortFrom(serverAddr, 9997), cs, []byte("ANYPROTO")),
	)
	alerts, _ := run(t, e, false, pkts...)
	if got := sids(alerts); !slices.Equal(got, []uint32{44, 40, 41, 42, 43}) {
		t.Errorf("alerts %v, want [44 40 41 42 43]", got)
	}
	for _, a := range alerts {
		if a.Rule.SID == 41 {
			ev := a.EVE()
			if ev.Proto != "ICMP" || ev.ICMPType == nil || *ev.ICMPType != 8 {
				t.Errorf("icmp alert: %+v", ev)
			}
		}
	}
}

func TestUnsupportedRulesReported(t *testing.T) {
	bad := anyRule(50, rules.ActionAlert, rules.ProtoTCP, pcre(`(?<=a)b`, false))
	mixed := anyRule(51, rules.ActionAlert, rules.ProtoTCP, content("x"))
	mixed.Dsize = &rules.IntMatch{Cmp: rules.CmpGt, Value: 1}
	mixed.Matches = append(mixed.Matches, rules.Match{Kind: rules.MatchContent, Buffer: rules.BufHTTPURI, Pattern: []byte("/y")})
	good := anyRule(52, rules.ActionAlert, rules.ProtoTCP, content("fine"))
	e, probs := Compile([]*rules.Rule{bad, mixed, good})
	if e.Len() != 1 || len(probs) != 2 {
		t.Fatalf("compiled %d, problems %v", e.Len(), probs)
	}
	if probs[0].SID != 50 || !strings.Contains(probs[0].Reason, "RE2") || probs[1].SID != 51 {
		t.Errorf("problems %+v", probs)
	}
}

func TestEVERecord(t *testing.T) {
	r := anyRule(2024001, rules.ActionAlert, rules.ProtoTCP, content("/etc/passwd"))
	r.Metadata = map[string][]string{"attack_target": {"Web_Server"}}
	r.Classtype = "attempted-admin"
	r.Priority = 1
	e := compileOne(t, r)
	k := newConn(t, 40012, 80)
	alerts, _ := run(t, e, false, append(k.handshake(), k.toServer(0, []byte(exploitRequest)))...)
	if len(alerts) != 1 {
		t.Fatalf("%d alerts", len(alerts))
	}
	ev := alerts[0].EVE()
	if ev.EventType != "alert" || ev.SrcIP != "10.0.1.10" || ev.SrcPort != 40012 || ev.DestIP != "10.0.2.20" || ev.DestPort != 80 ||
		ev.Proto != "TCP" || ev.Direction != "to_server" || ev.Timestamp != "2026-11-24T01:00:00.003000+0000" ||
		ev.Alert.Category != "Attempted Administrator Privilege Gain" || ev.Alert.Severity != 1 || ev.Alert.GID != 1 ||
		ev.Alert.Metadata["attack_target"][0] != "Web_Server" || ev.Flow.PktsToServer != 3 || ev.Flow.PktsToClient != 1 ||
		ev.FlowID == 0 || !strings.Contains(ev.PayloadPrintable, "/etc/passwd") {
		t.Errorf("EVE %+v", ev)
	}
}

// The hot path allocates nothing per packet once a flow exists.
func TestInspectNoAllocs(t *testing.T) {
	rs := []*rules.Rule{
		anyRule(1, rules.ActionAlert, rules.ProtoTCP, content("never-seen-pattern")),
		anyRule(2, rules.ActionAlert, rules.ProtoTCP, m("GET ", depth(4)), m("/nothing-here", distance(0))),
		anyRule(3, rules.ActionAlert, rules.ProtoUDP, content("nope")),
	}
	e := compileOne(t, rs...)
	insp := NewInspector(InspectorConfig{})
	k := newConn(t, 40013, 80)
	for _, p := range k.handshake() {
		insp.Packet(t0, p, e, true)
	}
	body := []byte("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
	var pkts [][]byte
	for j := 0; j < 200; j++ {
		pkts = append(pkts, k.toServer(j*len(body), body))
	}
	for _, p := range pkts[:10] {
		insp.Packet(t0, p, e, true)
	}
	n := 10
	allocs := testing.AllocsPerRun(100, func() {
		insp.Packet(t0, pkts[n], e, true)
		n++
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per packet, want 0", allocs)
	}
}

// Inline, each delivery is inspected once and the prefilter scans each
// byte once: a rule whose fast pattern came in an earlier segment than
// its other contents still matches (it stays pending).
func TestPendingRuleAcrossSegments(t *testing.T) {
	r := anyRule(60, rules.ActionDrop, rules.ProtoTCP, m("cmd="), m("very-long-fast-pattern", func(x *rules.Match) { x.FastPattern = true }, distance(0)), m(";rm", distance(0), within(10)))
	e := compileOne(t, r)
	k := newConn(t, 40020, 8080)
	pkts := append(k.handshake(),
		k.toServer(0, []byte("cmd=very-long-fast-pattern")),
		k.toServer(26, []byte(strings.Repeat(" ", 5))),
		k.toServer(31, []byte(";rm -rf /")),
	)
	alerts, vs := run(t, e, true, pkts...)
	if len(alerts) != 1 || vs[5] != VerdictDrop || vs[4] != VerdictPass {
		t.Errorf("alerts %v verdicts %v, want one drop on the last segment", sids(alerts), vs)
	}
	// Once the fast pattern has left the window, the rule cannot match.
	k = newConn(t, 40021, 8080)
	pkts = append(k.handshake(),
		k.toServer(0, []byte("cmd=very-long-fast-pattern")),
		k.toServer(26, []byte(strings.Repeat(" ", 3*windowSize))),
		k.toServer(26+3*windowSize, []byte(";rm -rf /")),
	)
	if alerts, _ := run(t, e, true, pkts...); len(alerts) != 0 {
		t.Errorf("far apart: alerts %v", sids(alerts))
	}
}

// One engine, several inspectors on their own goroutines (the agent's
// readers): the engine is read-only.
func TestEngineSharedByInspectors(t *testing.T) {
	e := compileOne(t, parse(t, httpRules...)...)
	k := newConn(t, 40030, 80)
	pkts := append(k.handshake(), k.toServer(0, []byte(exploitRequest)))
	done := make(chan int)
	for range 4 {
		go func() {
			n := 0
			for range 50 {
				alerts, _ := run(t, e, false, pkts...)
				n += len(alerts)
			}
			done <- n
		}()
	}
	for range 4 {
		if n := <-done; n != 50*3 {
			t.Errorf("%d alerts, want %d", n, 50*3)
		}
	}
}

// A regular expression whose first match in the window was reported
// already still finds the next one in new bytes.
func TestStreamPCRENextMatch(t *testing.T) {
	e := compileOne(t, anyRule(70, rules.ActionAlert, rules.ProtoTCP, pcre(`id=[0-9]+'`, false)))
	k := newConn(t, 40040, 3306)
	pkts := append(k.handshake(), k.toServer(0, []byte("q id=1' and ")), k.toServer(12, []byte("then id=2'")))
	if alerts, _ := run(t, e, true, pkts...); len(alerts) != 2 {
		t.Errorf("%d alerts, want 2 (one per segment)", len(alerts))
	}
}

// In detect mode, bytes held for identification are inspected when the
// flow expires, with the engine it was last inspected with.
func TestHeldBytesInspectedOnExpiry(t *testing.T) {
	e := compileOne(t, anyRule(80, rules.ActionAlert, rules.ProtoTCP, content("SECRET")))
	var got []*Alert
	insp := NewInspector(InspectorConfig{OnAlert: func(a *Alert) { got = append(got, a) }, TCPIdle: time.Minute})
	k := newConn(t, 40050, 7777)
	for _, p := range append(k.handshake(), k.toServer(0, []byte("the SECRET is out"))) {
		insp.Packet(t0, p, e, false)
	}
	if len(got) != 0 {
		t.Fatalf("alerted before the hold ended: %v", sids(got))
	}
	// Another flow's packet two minutes later expires the first.
	insp.Packet(t0.Add(2*time.Minute), udpPacket(t, netip.AddrPortFrom(clientAddr, 1), netip.AddrPortFrom(serverAddr, 2), []byte("x")), e, false)
	if len(got) != 1 || insp.Stats().Expired != 1 || !got[0].Time.Equal(t0) {
		t.Errorf("alerts %v, stats %+v", sids(got), insp.Stats())
	}
}
