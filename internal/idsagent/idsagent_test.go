package idsagent

import (
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/bulkhead/bulkhead/internal/ids"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/nft"
)

var (
	cli = netip.MustParseAddr("10.1.0.2")
	srv = netip.MustParseAddr("10.1.0.3")
)

// tcp4 builds an IPv4 TCP packet with gopacket.
func tcp4(t testing.TB, src, dst netip.Addr, sport, dport uint16, seq uint32, syn, ack bool, payload string) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, SYN: syn, ACK: ack, PSH: payload != "", Window: 65535}
	if ack {
		tcp.Ack = 1
	}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testRules: an alert, a drop, and a rule only the second set has.
var testRules = []string{
	`alert http any any -> any any (msg:"test exploit"; flow:to_server,established; http.uri; content:"/etc/passwd"; sid:1000001; rev:1;)`,
	`drop http any any -> any any (msg:"test shell"; flow:to_server,established; http.uri; content:"/bin/sh"; sid:1000002; rev:1;)`,
	`alert http any any -> any any (msg:"test later"; flow:to_server,established; http.uri; content:"/later"; sid:1000003; rev:1;)`,
}

type sink struct {
	mu   sync.Mutex
	eves []ids.EVE
	raw  [][]byte
}

func (s *sink) send(eve []byte) {
	var ev ids.EVE
	if err := json.Unmarshal(eve, &ev); err != nil {
		panic("idsagent test: sink got bad JSON: " + err.Error())
	}
	s.mu.Lock()
	s.eves = append(s.eves, ev)
	s.raw = append(s.raw, eve)
	s.mu.Unlock()
}

func (s *sink) get() []ids.EVE {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ids.EVE(nil), s.eves...)
}

// has reports whether an alert with sid to dest arrived.
func (s *sink) has(sid uint32, dest string) bool {
	for _, ev := range s.get() {
		if ev.Alert.SignatureID == sid && ev.DestIP == dest {
			return true
		}
	}
	return false
}

// wait returns the first alert with sid, waiting up to d.
func (s *sink) wait(sid uint32, d time.Duration) (ids.EVE, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, ev := range s.get() {
			if ev.Alert.SignatureID == sid {
				return ev, true
			}
		}
		if time.Now().After(deadline) {
			return ids.EVE{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestReader(t testing.TB, s *sink, ifNames map[uint32]string) *Reader {
	t.Helper()
	r, err := New(Config{Host: "hv-1", Sink: s.send, IfName: func(i uint32) (string, error) { return ifNames[i], nil }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func setState(t testing.TB, r *Reader, st *nft.IDSState) {
	t.Helper()
	select {
	case <-r.SetState(st):
	case <-time.After(10 * time.Second):
		t.Fatal("engine set not built in 10s")
	}
}

func TestSelectRulesTurnsDetectOnlyDropsIntoAlerts(t *testing.T) {
	rs, probs := rules.Read(strings.NewReader(strings.Join(testRules, "\n")), "test", rules.DefaultVars())
	if len(probs) > 0 || len(rs) != 3 {
		t.Fatalf("rules %d, problems %+v", len(rs), probs)
	}
	bySID := map[uint32]*rules.Rule{}
	for _, r := range rs {
		bySID[r.SID] = r
	}
	got := selectRules(bySID, nft.IDSWorkload{SIDs: []uint32{1000001, 1000002, 4242}})
	if len(got) != 2 || got[1].SID != 1000002 || got[1].Action != rules.ActionAlert {
		t.Fatalf("detect-only: %+v", got)
	}
	if bySID[1000002].Action != rules.ActionDrop {
		t.Errorf("the shared rule was changed")
	}
	got = selectRules(bySID, nft.IDSWorkload{SIDs: []uint32{1000002}, PreventSIDs: []uint32{1000002}})
	if len(got) != 1 || got[0] != bySID[1000002] {
		t.Errorf("prevent: %+v", got)
	}
	// A prevent profile with preventAction drop/reject: alert rules among
	// the block/reject sids are copies that drop/reject; the drop rule
	// keeps its action; an alert rule that is only a prevent sid alerts.
	got = selectRules(bySID, nft.IDSWorkload{SIDs: []uint32{1000001, 1000002, 1000003},
		PreventSIDs: []uint32{1000001, 1000002, 1000003}, BlockSIDs: []uint32{1000001, 1000002}, RejectSIDs: []uint32{1000003}})
	if len(got) != 3 || got[0].Action != rules.ActionDrop || got[1] != bySID[1000002] || got[2].Action != rules.ActionReject {
		t.Errorf("block/reject: %v %v %v", got[0].Action, got[1].Action, got[2].Action)
	}
	if bySID[1000001].Action != rules.ActionAlert || bySID[1000003].Action != rules.ActionAlert {
		t.Errorf("the shared rules were changed")
	}
	got = selectRules(bySID, nft.IDSWorkload{SIDs: []uint32{1000001}, PreventSIDs: []uint32{1000001}})
	if len(got) != 1 || got[0] != bySID[1000001] {
		t.Errorf("alert rule as written: %+v", got)
	}
}

// TestEngineKey: workloads share an engine only when all four sid lists
// are equal; moving a sid from one list to the next gives another key.
func TestEngineKey(t *testing.T) {
	base := nft.IDSWorkload{SIDs: []uint32{1, 2}, PreventSIDs: []uint32{1, 2}}
	keys := map[string]string{}
	for name, w := range map[string]nft.IDSWorkload{
		"as written":        base,
		"block 1":           {SIDs: base.SIDs, PreventSIDs: base.PreventSIDs, BlockSIDs: []uint32{1}},
		"reject 1":          {SIDs: base.SIDs, PreventSIDs: base.PreventSIDs, RejectSIDs: []uint32{1}},
		"block 1 2":         {SIDs: base.SIDs, PreventSIDs: base.PreventSIDs, BlockSIDs: []uint32{1, 2}},
		"block 1, reject 2": {SIDs: base.SIDs, PreventSIDs: base.PreventSIDs, BlockSIDs: []uint32{1}, RejectSIDs: []uint32{2}},
		"prevent 1":         {SIDs: base.SIDs, PreventSIDs: []uint32{1}},
		"detect":            {SIDs: base.SIDs},
	} {
		k := engineKey(w)
		if other, ok := keys[k]; ok {
			t.Errorf("%s and %s have the same engine key", name, other)
		}
		keys[k] = name
	}
	if engineKey(base) != engineKey(nft.IDSWorkload{Name: "other", Interface: "x", SIDs: []uint32{1, 2}, PreventSIDs: []uint32{1, 2}}) {
		t.Error("equal sid lists give different keys")
	}
}

// TestEnginesPerWorkload: one engine per distinct (SIDs, PreventSIDs);
// each workload's packets meet its own signatures; EVE records carry the
// "bulkhead" object; a new state swaps engines and keeps flows.
func TestEnginesPerWorkload(t *testing.T) {
	s := &sink{}
	r := newTestReader(t, s, map[uint32]string{1: "bhwc", 2: "bhws", 3: "bhwt", 4: "bhwx"})
	st := &nft.IDSState{Version: "test@1", Rules: testRules, Workloads: []nft.IDSWorkload{
		{Name: "s", Interface: "bhws", Mode: nft.IDSDetect, Profiles: []string{"web"}, SIDs: []uint32{1000001, 1000002}},
		{Name: "t", Interface: "bhwt", Mode: nft.IDSDetect, Profiles: []string{"web"}, SIDs: []uint32{1000001, 1000002}},
		{Name: "x", Interface: "bhwx", Mode: nft.IDSPrevent, Profiles: []string{"db", "strict"}, SIDs: []uint32{1000002}, PreventSIDs: []uint32{1000002}},
	}}
	setState(t, r, st)
	set := r.set.Load()
	if set.engines != 2 || set.byIface["bhws"].engine != set.byIface["bhwt"].engine || set.byIface["bhwx"].engine == set.byIface["bhws"].engine {
		t.Fatalf("engines %d: want 2, s and t sharing one", set.engines)
	}
	w := r.newWorker(false)
	conn := func(dst netip.Addr, out uint32, sport uint16, uri string) {
		w.handle(time.Now(), tcp4(t, cli, dst, sport, 80, 100, true, false, ""), 1, out)
		w.handle(time.Now(), tcp4(t, dst, cli, 80, sport, 500, true, true, ""), out, 1)
		w.handle(time.Now(), tcp4(t, cli, dst, sport, 80, 101, false, true, ""), 1, out)
		w.handle(time.Now(), tcp4(t, cli, dst, sport, 80, 101, false, true, "GET "+uri+" HTTP/1.1\r\nHost: s\r\n\r\n"), 1, out)
		w.handle(time.Now(), tcp4(t, dst, cli, 80, sport, 501, false, true, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), out, 1)
	}
	conn(srv, 2, 40001, "/etc/passwd")
	ev, ok := s.wait(1000001, time.Second)
	if !ok {
		t.Fatalf("no alert for sid 1000001; got %+v", s.get())
	}
	want := ids.BulkheadInfo{Host: "hv-1", DestWorkload: "s", Interface: "bhws", Profile: "web", Mode: "detect"}
	if ev.Bulkhead == nil || *ev.Bulkhead != want || ev.Alert.Signature != "test exploit" || ev.InIface != "bhws" {
		t.Errorf("alert %s", s.raw[0])
	}
	// x has no sid 1000001: the same request to it raises nothing.
	n := len(s.get())
	conn(netip.MustParseAddr("10.1.0.4"), 4, 40002, "/etc/passwd")
	if len(s.get()) != n {
		t.Errorf("x alerted on a signature it does not have: %+v", s.get()[n:])
	}

	// A long connection to s survives the swap to a set with sid
	// 1000003.
	w.handle(time.Now(), tcp4(t, cli, srv, 40003, 80, 100, true, false, ""), 1, 2)
	w.handle(time.Now(), tcp4(t, srv, cli, 80, 40003, 500, true, true, ""), 2, 1)
	w.handle(time.Now(), tcp4(t, cli, srv, 40003, 80, 101, false, true, ""), 1, 2)
	st2 := *st
	st2.Version = "test@2"
	st2.Workloads = []nft.IDSWorkload{{Name: "s", Interface: "bhws", Mode: nft.IDSDetect, SIDs: []uint32{1000003}}}
	setState(t, r, &st2)
	if r.Stats().Swaps != 2 || r.Version() != "test@2" {
		t.Errorf("stats %+v version %s", r.Stats(), r.Version())
	}
	w.handle(time.Now(), tcp4(t, cli, srv, 40003, 80, 101, false, true, "GET /later HTTP/1.1\r\nHost: s\r\n\r\n"), 1, 2)
	if _, ok := s.wait(1000003, time.Second); !ok {
		t.Errorf("no alert on the connection opened before the swap")
	}
}

// TestInlineBlock: in a prevent engine the drop rule blocks; in a detect
// workload's engine the same rule only alerts.
func TestInlineBlock(t *testing.T) {
	s := &sink{}
	r := newTestReader(t, s, map[uint32]string{1: "bhwc", 2: "bhws", 3: "bhwt"})
	setState(t, r, &nft.IDSState{Version: "v", Rules: testRules, Workloads: []nft.IDSWorkload{
		{Name: "s", Interface: "bhws", Mode: nft.IDSPrevent, SIDs: []uint32{1000002}, PreventSIDs: []uint32{1000002}},
		{Name: "t", Interface: "bhwt", Mode: nft.IDSPrevent, SIDs: []uint32{1000002}},
	}})
	for _, tc := range []struct {
		out  uint32
		dst  netip.Addr
		want ids.Verdict
	}{{2, srv, ids.VerdictDrop}, {3, netip.MustParseAddr("10.1.0.4"), ids.VerdictPass}} {
		w := r.newWorker(true)
		w.handle(time.Now(), tcp4(t, cli, tc.dst, 40001, 80, 100, true, false, ""), 1, tc.out)
		w.handle(time.Now(), tcp4(t, tc.dst, cli, 80, 40001, 500, true, true, ""), tc.out, 1)
		w.handle(time.Now(), tcp4(t, cli, tc.dst, 40001, 80, 101, false, true, ""), 1, tc.out)
		v := w.handle(time.Now(), tcp4(t, cli, tc.dst, 40001, 80, 101, false, true, "GET /bin/sh HTTP/1.1\r\nHost: s\r\n\r\n"), 1, tc.out)
		if v != tc.want {
			t.Errorf("iface %d: verdict %v, want %v", tc.out, v, tc.want)
		}
	}
	evs := s.get()
	if len(evs) != 2 || evs[0].Alert.Action != "blocked" || evs[1].Alert.Action != "allowed" {
		t.Errorf("alerts %+v", evs)
	}
}

// TestInlineBlockAlertSignature: an alert signature blocks in a prevent
// workload whose block sids hold it (preventAction drop), and rejects with
// its reject sids; in a prevent workload without them it only alerts.
func TestInlineBlockAlertSignature(t *testing.T) {
	s := &sink{}
	r := newTestReader(t, s, map[uint32]string{1: "bhwc", 2: "bhws", 3: "bhwt", 4: "bhwu"})
	setState(t, r, &nft.IDSState{Version: "v", Rules: testRules, Workloads: []nft.IDSWorkload{
		{Name: "s", Interface: "bhws", Mode: nft.IDSPrevent, SIDs: []uint32{1000001}, PreventSIDs: []uint32{1000001}, BlockSIDs: []uint32{1000001}},
		{Name: "t", Interface: "bhwt", Mode: nft.IDSPrevent, SIDs: []uint32{1000001}, PreventSIDs: []uint32{1000001}},
		{Name: "u", Interface: "bhwu", Mode: nft.IDSPrevent, SIDs: []uint32{1000001}, PreventSIDs: []uint32{1000001}, RejectSIDs: []uint32{1000001}},
	}})
	if set := r.set.Load(); set.engines != 3 {
		t.Fatalf("engines %d: want 3 (block, as written, reject)", set.engines)
	}
	for _, tc := range []struct {
		out  uint32
		dst  netip.Addr
		want ids.Verdict
	}{{2, srv, ids.VerdictDrop}, {3, netip.MustParseAddr("10.1.0.4"), ids.VerdictPass}, {4, netip.MustParseAddr("10.1.0.5"), ids.VerdictReject}} {
		w := r.newWorker(true)
		w.handle(time.Now(), tcp4(t, cli, tc.dst, 40001, 80, 100, true, false, ""), 1, tc.out)
		w.handle(time.Now(), tcp4(t, tc.dst, cli, 80, 40001, 500, true, true, ""), tc.out, 1)
		w.handle(time.Now(), tcp4(t, cli, tc.dst, 40001, 80, 101, false, true, ""), 1, tc.out)
		v := w.handle(time.Now(), tcp4(t, cli, tc.dst, 40001, 80, 101, false, true, "GET /etc/passwd HTTP/1.1\r\nHost: s\r\n\r\n"), 1, tc.out)
		if v != tc.want {
			t.Errorf("iface %d: verdict %v, want %v", tc.out, v, tc.want)
		}
	}
	evs := s.get()
	if len(evs) != 3 {
		t.Fatalf("alerts %+v", evs)
	}
	for i, want := range []string{"blocked", "allowed", "blocked"} {
		if evs[i].Alert.Action != want || evs[i].Alert.SignatureID != 1000001 {
			t.Errorf("alert %d: action %s sid %d, want %s", i, evs[i].Alert.Action, evs[i].Alert.SignatureID, want)
		}
	}
}

// TestPickResponder: between two inspected workloads of the host the
// responder's engine inspects both directions.
func TestPickResponder(t *testing.T) {
	a, b := &slot{w: nft.IDSWorkload{Name: "a"}, engine: &ids.Engine{}}, &slot{w: nft.IDSWorkload{Name: "b"}, engine: &ids.Engine{}}
	w := &worker{}
	w.resp.init(4)
	// a (cli) connects to b (srv): b responds.
	syn := tcp4(t, cli, srv, 40000, 80, 1, true, false, "")
	synack := tcp4(t, srv, cli, 80, 40000, 9, true, true, "")
	if got := w.pick(syn, a, b); got != b {
		t.Errorf("SYN: %s", got.w.Name)
	}
	if got := w.pick(synack, b, a); got != b {
		t.Errorf("SYN-ACK: %s", got.w.Name)
	}
	// First seen mid-stream from the server side (SYN-ACK): still b.
	w2 := &worker{}
	w2.resp.init(4)
	if got := w2.pick(synack, b, a); got != b {
		t.Errorf("first SYN-ACK: %s", got.w.Name)
	}
	if got := w2.pick(syn, a, b); got != b {
		t.Errorf("then SYN: %s", got.w.Name)
	}
	// One end inspected: that one.
	if w.pick(syn, nil, b) != b || w.pick(syn, a, nil) != a {
		t.Errorf("one end")
	}
	// Bounded: old generations go.
	for p := range uint16(20) {
		w.pick(tcp4(t, cli, srv, 1000+p, 80, 1, true, false, ""), a, b)
	}
	if len(w.resp.cur) > 4 || len(w.resp.prev) > 4 {
		t.Errorf("responder maps %d+%d over the bound", len(w.resp.cur), len(w.resp.prev))
	}
}

func TestBadStateKeepsEngines(t *testing.T) {
	s := &sink{}
	r := newTestReader(t, s, nil)
	good := &nft.IDSState{Version: "good", Rules: testRules, Workloads: []nft.IDSWorkload{{Name: "s", Interface: "bhws", Mode: nft.IDSDetect, SIDs: []uint32{1000001}}}}
	setState(t, r, good)
	bad := *good
	bad.Version = "bad"
	bad.Vars = map[string]string{"HOME_NET": "[10.0.0.0/8,"}
	setState(t, r, &bad)
	if r.Version() != "good" || r.Stats().Errors == 0 {
		t.Errorf("version %q stats %+v: want the good set kept and the error counted", r.Version(), r.Stats())
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "sink") {
		t.Errorf("no sink: %v", err)
	}
	if _, err := New(Config{Sink: func([]byte) {}, Queue: 65535, Queues: 2}); err == nil {
		t.Errorf("queues beyond 65535 accepted")
	}
}

// The per-packet path of a worker allocates nothing of its own once the
// flow is known (the engine's Inspector has its own test).
func TestHandleNoAllocs(t *testing.T) {
	s := &sink{}
	r := newTestReader(t, s, map[uint32]string{1: "bhwc", 2: "bhws", 3: "bhwt"})
	setState(t, r, &nft.IDSState{Version: "v", Rules: testRules, Workloads: []nft.IDSWorkload{
		{Name: "s", Interface: "bhws", Mode: nft.IDSDetect, SIDs: []uint32{1000001}},
		{Name: "t", Interface: "bhwt", Mode: nft.IDSDetect, SIDs: []uint32{1000003}},
	}})
	w := r.newWorker(false)
	t2 := netip.MustParseAddr("10.1.0.4")
	syn := tcp4(t, srv, t2, 40000, 80, 1, true, false, "")
	ack := tcp4(t, srv, t2, 40000, 80, 2, false, true, "")
	w.handle(time.Now(), syn, 2, 3)
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { w.pick(ack, r.set.Load().byIface["bhws"], r.set.Load().byIface["bhwt"]) }); n != 0 {
		t.Errorf("pick between two inspected workloads: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { w.handle(now, ack, 2, 3) }); n != 0 {
		t.Errorf("handle: %v allocations per packet", n)
	}
}

// FuzzTupleOf: the worker's own header reading never panics, and a
// packet and its reverse name the same connection.
func FuzzTupleOf(f *testing.F) {
	f.Add(tcp4(f, cli, srv, 40000, 80, 1, true, false, ""))
	f.Add(tcp4(f, srv, cli, 80, 40000, 9, true, true, "x"))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 17, 64})
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, srcIsA, _, ok := tupleOf(b)
		if !ok {
			return
		}
		// Swap the addresses and ports: the same tuple, the other side.
		r := append([]byte(nil), b...)
		switch r[0] >> 4 {
		case 4:
			ihl := int(r[0]&0xf) * 4
			copy(r[12:16], b[16:20])
			copy(r[16:20], b[12:16])
			copy(r[ihl:ihl+2], b[ihl+2:ihl+4])
			copy(r[ihl+2:ihl+4], b[ihl:ihl+2])
		case 6:
			copy(r[8:24], b[24:40])
			copy(r[24:40], b[8:24])
			copy(r[40:42], b[42:44])
			copy(r[42:44], b[40:42])
		}
		k2, srcIsA2, _, ok2 := tupleOf(r)
		if !ok2 || k2 != k {
			t.Fatalf("reverse packet: tuple %+v ok %v, want %+v", k2, ok2, k)
		}
		if srcIsA2 == srcIsA && k.a != k.b {
			t.Fatalf("both directions claim the same side")
		}
	})
}

// BenchmarkHandle: one worker's per-packet path (interface lookup, engine
// choice between two inspected workloads, inspection) on an HTTP
// connection's request packets.
func BenchmarkHandle(b *testing.B) {
	s := &sink{}
	r := newTestReader(b, s, map[uint32]string{2: "bhws", 3: "bhwt"})
	setState(b, r, &nft.IDSState{Version: "v", Rules: testRules, Workloads: []nft.IDSWorkload{
		{Name: "s", Interface: "bhws", Mode: nft.IDSDetect, SIDs: []uint32{1000001, 1000002}},
		{Name: "t", Interface: "bhwt", Mode: nft.IDSDetect, SIDs: []uint32{1000003}},
	}})
	w := r.newWorker(false)
	t2 := netip.MustParseAddr("10.1.0.4")
	now := time.Now()
	w.handle(now, tcp4(b, srv, t2, 40000, 80, 100, true, false, ""), 2, 3)
	w.handle(now, tcp4(b, t2, srv, 80, 40000, 500, true, true, ""), 3, 2)
	req := "GET /index.html HTTP/1.1\r\nHost: t\r\nUser-Agent: bench\r\n\r\n"
	// 4096 requests in sequence (beyond that they repeat, as
	// retransmissions).
	pkts := make([][]byte, 4096)
	seq := uint32(101)
	for i := range pkts {
		pkts[i] = tcp4(b, srv, t2, 40000, 80, seq, false, true, req)
		seq += uint32(len(req))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkts[0])))
	for i := 0; b.Loop(); i++ {
		w.handle(now, pkts[i%len(pkts)], 2, 3)
	}
}
