package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"

	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nfq"
)

func TestCompileIDS(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *IDSState
		err  string
	}{
		{"nil", nil, ""},
		{"no workloads", &IDSState{Version: "x@1"}, ""},
		{"bad mode", &IDSState{Workloads: []IDSWorkload{{Name: "web", Interface: "bhw1", Mode: "block"}}}, `mode "block"`},
		{"no interface", &IDSState{Workloads: []IDSWorkload{{Name: "web", Mode: IDSDetect}}}, `interface ""`},
		{"long interface", &IDSState{Workloads: []IDSWorkload{{Name: "web", Interface: "bhw1234567890123", Mode: IDSDetect}}}, "want 1 to 15 bytes"},
		{"two modes", &IDSState{Workloads: []IDSWorkload{
			{Name: "web", Interface: "bhw1", Mode: IDSDetect}, {Name: "web", Interface: "bhw1", Mode: IDSPrevent},
		}}, "both detect and prevent"},
	} {
		c, err := compileIDS(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
		case tc.err == "" && c != nil:
			t.Errorf("%s: compiled %+v, want nothing", tc.name, c)
		}
	}
	c, err := compileIDS(&IDSState{Workloads: []IDSWorkload{
		{Name: "b", Interface: "bhw2", Mode: IDSPrevent},
		{Name: "a", Interface: "bhw9", Mode: IDSDetect},
		{Name: "a", Interface: "bhw1", Mode: IDSDetect},
		{Name: "a", Interface: "bhw1", Mode: IDSDetect},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.detect) != 2 || !bytes.Equal(c.detect[0], ifnameKey("bhw1")) || !bytes.Equal(c.detect[1], ifnameKey("bhw9")) ||
		len(c.prevent) != 1 || !bytes.Equal(c.prevent[0], ifnameKey("bhw2")) {
		t.Errorf("compiled %q / %q", c.detect, c.prevent)
	}
}

func TestConfigIDSQueues(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{L7Queues: 64}, true}, // 7-70 and 128
		{Config{L7Queues: 200}, false},
		{Config{IDSQueue: 7}, false},
		{Config{IDSQueue: 10, L7Queues: 4}, false},
		{Config{IDSQueue: 8, L7Queue: 2, L7Queues: 6}, true},
		{Config{IDSQueue: 65535, IDSQueues: 2}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}

// The queue rule balances by flow hash: no CPU fanout flag, the bypass
// flag unless fail-closed.
func TestNFQueueBalance(t *testing.T) {
	b := nfqueueBalance(16, 4, true)
	ne := binary.NativeEndian
	if len(b) != 6 || ne.Uint16(b) != 16 || ne.Uint16(b[2:]) != 4 || ne.Uint16(b[4:]) != nfqBypass {
		t.Errorf("info %x, want queues 16-19 with the bypass flag only (no CPU fanout)", b)
	}
	if b := nfqueueBalance(16, 1, false); ne.Uint16(b[4:]) != 0 {
		t.Errorf("fail-closed flags %x", b[4:])
	}
}

// idsLab is one host with three workloads under shopPolicy (web -> app
// on portA allowed, web -> db on portB dropped by default).
func idsLab(t *testing.T, cfg Config, ids *IDSState) (*lab, *HostState) {
	t.Helper()
	l := newLab(t, 1, 3, cfg)
	st := l.state(l.hosts[0], shopPolicy, 1)
	st.IDS = ids
	if _, err := l.tables["h1"].Apply(st); err != nil {
		t.Fatal(err)
	}
	return l, st
}

func (l *lab) nftListIDS(t *testing.T) (string, error) {
	out, err := l.hosts[0].NS.Exec(context.Background(), "nft", "list", "table", "inet", DefaultTable+IDSTableSuffix)
	return string(out), err
}

// TestIDSTableFollowsState: the inspection table exists only while the
// state has IDS workloads; mode changes are element updates; the policy
// table is the same with or without it.
func TestIDSTableFollowsState(t *testing.T) {
	l, st := idsLab(t, Config{}, nil)
	tb := l.tables["h1"]
	web, app := l.w(1, 1), l.w(1, 2)
	if out, err := l.nftListIDS(t); err == nil {
		t.Fatalf("IDS table present without IDS:\n%s", out)
	}
	ids := &IDSState{Workloads: []IDSWorkload{
		{Name: "w1", Interface: web.Interface, Mode: IDSDetect},
		{Name: "w2", Interface: app.Interface, Mode: IDSPrevent},
	}}
	// The same revision, applied in full, with and without IDS. A full
	// apply turns the forward chain to the other version: compare the
	// table at the same version.
	s0, err := tb.ApplyFull(st)
	if err != nil {
		t.Fatal(err)
	}
	without := l.nftList(l.hosts[0])
	st.IDS = ids
	for i := 0; i < 2; i++ {
		s, err := tb.ApplyFull(st)
		if err != nil {
			t.Fatal(err)
		}
		if s.Version == s0.Version {
			break
		}
	}
	if with := l.nftList(l.hosts[0]); with != without {
		t.Errorf("the policy table changed with IDS:\n%s\nwant\n%s", with, without)
	}
	st.IDS = nil
	if _, err := tb.Apply(st); err != nil {
		t.Fatal(err)
	}
	if out, err := l.nftListIDS(t); err == nil {
		t.Fatalf("IDS table present without IDS:\n%s", out)
	}
	st.Revision = 2
	st.IDS = ids
	if _, err := tb.Apply(st); err != nil { // incremental: the IDS table is created
		t.Fatal(err)
	}
	out, err := l.nftListIDS(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hook forward priority filter + 10", web.Interface, app.Interface, "log group 102", "reject with tcp reset"} {
		if !strings.Contains(out, want) {
			t.Errorf("IDS table lacks %q:\n%s", want, out)
		}
	}
	if s, err := tb.Verify(true); err != nil || len(s.Drift) > 0 {
		t.Errorf("verify: %v %v", s.Drift, err)
	}

	// A mode change moves the interface between the sets; the chain
	// stays (its handle is unchanged).
	handle := regexp.MustCompile(`chain inspect \{ # handle (\d+)`)
	out0, _ := l.hosts[0].NS.Exec(context.Background(), "nft", "-a", "list", "table", "inet", DefaultTable+IDSTableSuffix)
	st.Revision = 3
	st.IDS.Workloads[1].Mode = IDSDetect
	if _, err := tb.Apply(st); err != nil {
		t.Fatal(err)
	}
	out1, _ := l.hosts[0].NS.Exec(context.Background(), "nft", "-a", "list", "table", "inet", DefaultTable+IDSTableSuffix)
	h0, h1 := handle.FindSubmatch(out0), handle.FindSubmatch(out1)
	if h0 == nil || h1 == nil || string(h0[1]) != string(h1[1]) {
		t.Errorf("inspect chain recreated by a mode change:\n%s\n%s", out0, out1)
	}
	detect := regexp.MustCompile(`set detect \{[^}]*elements = \{([^}]*)\}`).FindSubmatch(out1)
	if detect == nil || !strings.Contains(string(detect[1]), app.Interface) {
		t.Errorf("%s not in the detect set:\n%s", app.Interface, out1)
	}

	// Someone deletes it: Verify says so, a full apply restores it.
	if _, err := l.hosts[0].NS.Exec(context.Background(), "nft", "delete", "table", "inet", DefaultTable+IDSTableSuffix); err != nil {
		t.Fatal(err)
	}
	if s, err := tb.Verify(false); err != nil || len(s.Drift) == 0 {
		t.Errorf("verify after deleting the IDS table: drift %v, err %v", s.Drift, err)
	}
	if _, err := tb.Apply(st); err != nil { // the agent's repair
		t.Fatal(err)
	}
	if _, err := l.nftListIDS(t); err != nil {
		t.Errorf("IDS table not restored: %v", err)
	}

	st.Revision = 4
	st.IDS = nil
	if _, err := tb.Apply(st); err != nil {
		t.Fatal(err)
	}
	if out, err := l.nftListIDS(t); err == nil {
		t.Errorf("IDS table left after IDS ended:\n%s", out)
	}
	if s, err := tb.Verify(true); err != nil || len(s.Drift) > 0 {
		t.Errorf("verify: %v %v", s.Drift, err)
	}
}

// copies reads the IDS NFLOG group and counts, per marker, the copies
// whose payload contains it (one listener per group and namespace).
func copies(t *testing.T, h *netlab.Host, group uint16, markers ...string) []*atomic.Int64 {
	t.Helper()
	nf, err := nflog.Open(&nflog.Config{Group: group, Copymode: nflog.CopyPacket, Bufsize: 0xffff, Timeout: 1, NetNS: h.NS.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	n := make([]*atomic.Int64, len(markers))
	for i := range n {
		n[i] = new(atomic.Int64)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); nf.Close() })
	err = nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		for i, m := range markers {
			if a.Payload != nil && bytes.Contains(*a.Payload, []byte(m)) {
				n[i].Add(1)
			}
		}
		return 0
	}, func(err error) int {
		if ctx.Err() == nil {
			t.Logf("nflog: %v", err)
		}
		return 0
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIDSDetectCopiesAllowedTraffic: in detect mode each packet of an
// allowed flow is copied once, even between two inspected workloads, and
// a flow the policy dropped is never copied.
func TestIDSDetectCopiesAllowedTraffic(t *testing.T) {
	needRoot(t)
	l := newLab(t, 1, 3, Config{})
	web, app, db := l.w(1, 1), l.w(1, 2), l.w(1, 3)
	st := l.state(l.hosts[0], shopPolicy, 1)
	st.IDS = &IDSState{Workloads: []IDSWorkload{
		{Name: "w1", Interface: web.Interface, Mode: IDSDetect},
		{Name: "w2", Interface: app.Interface, Mode: IDSDetect},
		{Name: "w3", Interface: db.Interface, Mode: IDSDetect},
	}}
	if _, err := l.tables["h1"].Apply(st); err != nil {
		t.Fatal(err)
	}
	marker := []byte("detect-marker-7f3a")
	counts := copies(t, l.hosts[0], DefaultIDSLogGroup, string(marker), "udp-allowed-51ab", "udp-dropped-9c1d")
	n := counts[0]

	c := dialGreeted(t, web, app, false, portA)
	if _, err := c.Write(marker); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(marker))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	// Two packets carry the marker: the request and its echo.
	deadline := time.Now().Add(slowTimeout)
	for n.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive by now
	if got := n.Load(); got != 2 {
		t.Errorf("%d copies of the marker, want 2 (one per packet)", got)
	}

	// UDP: web -> db portA is allowed (rule 13; the server echoes),
	// db -> web portB dropped by the default rule: never inspected.
	for _, p := range []struct {
		src, dst *netlab.Workload
		port     uint16
		marker   string
	}{{web, db, portA, "udp-allowed-51ab"}, {db, web, portB, "udp-dropped-9c1d"}} {
		c, err := p.src.Dial("udp", netip.AddrPortFrom(p.dst.IPv4, p.port), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(p.marker))
		// Read the echo before closing: an echo to a closed port would
		// come back quoted in an ICMP error, a third copy.
		c.SetReadDeadline(time.Now().Add(dropTimeout))
		c.Read(make([]byte, 64))
		c.Close()
	}
	deadline = time.Now().Add(slowTimeout)
	for counts[1].Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := counts[1].Load(); got != 2 {
		t.Errorf("%d copies of the allowed datagram and its echo, want 2", got)
	}
	if got := counts[2].Load(); got != 0 {
		t.Errorf("%d copies of a datagram the policy dropped, want 0", got)
	}
}

// blockingReader answers the IDS queue: packets from blockFrom that
// contain "EXPLOIT" get the block verdict, others pass. It counts what it
// saw.
type blockingReader struct {
	blockFrom     netip.Addr
	seen, blocked atomic.Int64
	sawAfter      atomic.Int64 // packets of a blocked flow seen later
	mu            sync.Mutex
	blockedFlows  map[string]bool
}

// flowKey names an IPv4 TCP/UDP packet's flow, the same both ways.
func flowKey(pkt []byte) (key string, src netip.Addr) {
	if len(pkt) < 24 || pkt[0]>>4 != 4 {
		return "", netip.Addr{}
	}
	ihl := int(pkt[0]&0xf) * 4
	a, b := string(pkt[12:16])+string(pkt[ihl:ihl+2]), string(pkt[16:20])+string(pkt[ihl+2:ihl+4])
	if a > b {
		a, b = b, a
	}
	return a + b, netip.AddrFrom4([4]byte(pkt[12:16]))
}

func (r *blockingReader) run(ctx context.Context, t *testing.T, h *netlab.Host, queue uint16) {
	qc, err := nfq.Open(queue, h.NS.Fd(), nfq.FlagGSO)
	if err != nil {
		t.Errorf("queue %d: %v", queue, err)
		return
	}
	defer qc.Close()
	for ctx.Err() == nil {
		err := qc.Receive(func(p *nfq.Packet) {
			r.seen.Add(1)
			k, src := flowKey(p.Payload)
			r.mu.Lock()
			if r.blockedFlows[k] {
				r.sawAfter.Add(1)
			}
			block := src == r.blockFrom && bytes.Contains(p.Payload, []byte("EXPLOIT"))
			if block {
				r.blockedFlows[k] = true
			}
			r.mu.Unlock()
			v, m := uint32(nfq.Accept), uint32(0)
			if block {
				r.blocked.Add(1)
				v, m = nfq.Repeat, uint32(MarkIDSBlock)
			}
			if err := qc.Verdict(p.ID, v, m); err != nil {
				t.Errorf("verdict: %v", err)
			}
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("receive: %v", err)
			return
		}
	}
}

// blockedDrops reads the counter of the inspection chain's blocked-flow
// rule.
func blockedDrops(t *testing.T, h *netlab.Host) int {
	t.Helper()
	out, err := h.NS.Exec(context.Background(), "nft", "list", "chain", "inet", DefaultTable+IDSTableSuffix, ChainIDS)
	if err != nil {
		t.Fatal(err)
	}
	cnt := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if cnt == nil {
		t.Fatalf("no counter on the blocked-flow rule:\n%s", out)
	}
	n, _ := strconv.Atoi(string(cnt[1]))
	return n
}

// TestIDSPreventBlocksFlow: a prevent workload's packets wait for the
// reader; a block verdict resets the sender, marks the flow, and the
// kernel drops the flow's later packets without queueing them; other
// connections go on. Fail-closed, nothing passes without a reader.
func TestIDSPreventBlocksFlow(t *testing.T) {
	needRoot(t)
	l := newLab(t, 1, 3, Config{IDSQueue: 30, IDSFailClosed: true})
	h := l.hosts[0]
	web, app := l.w(1, 1), l.w(1, 2)
	st := l.state(h, shopPolicy, 1)
	st.IDS = &IDSState{Workloads: []IDSWorkload{{Name: "w2", Interface: app.Interface, Mode: IDSPrevent}}}
	if _, err := l.tables["h1"].Apply(st); err != nil {
		t.Fatal(err)
	}
	if o, _ := web.ProbeTCP(netip.AddrPortFrom(app.IPv4, portA), dropTimeout); o != netlab.Timeout {
		t.Errorf("fail-closed without a reader: %v, want a timeout", o)
	}
	// The server's echo of the exploit is what gets blocked: the client
	// keeps its side and can show that later packets die in the kernel.
	r := &blockingReader{blockFrom: app.IPv4, blockedFlows: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.run(ctx, t, h, 30) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(100 * time.Millisecond)

	good := dialGreeted(t, web, app, false, portA)
	if err := echoOK(good); err != nil {
		t.Fatalf("clean connection: %v", err)
	}
	if seen := r.seen.Load(); seen < 5 {
		t.Errorf("reader saw %d packets of a clean connection, want the handshake too", seen)
	}

	bad := dialGreeted(t, web, app, false, portA)
	if _, err := bad.Write([]byte("GET /EXPLOIT HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	bad.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := bad.Read(make([]byte, 64)); err == nil {
		t.Errorf("the blocked echo arrived (%d bytes)", n)
	}
	m, ok := flowMark(t, h, bad)
	switch {
	case !ok || m&MarkIDSBlock == 0:
		t.Errorf("blocked flow's ct mark %#x (found %v), want the IDS bit", uint32(m), ok)
	case m.Verdict() != (Verdict{Rule: 10, Action: Allow}):
		t.Errorf("blocked flow's policy verdict %+v: the IDS bit must leave it alone", m.Verdict())
	}
	before := blockedDrops(t, h)
	bad.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := bad.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(slowTimeout)
	for blockedDrops(t, h) == before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if blockedDrops(t, h) == before {
		t.Errorf("a later packet of the blocked flow was not dropped by the ct mark rule")
	}
	if n := r.sawAfter.Load(); n != 0 {
		t.Errorf("reader saw %d packets of the flow after blocking it", n)
	}
	if err := echoOK(good); err != nil {
		t.Errorf("clean connection after the block: %v", err)
	}
	if err := echoOK(dialGreeted(t, web, app, false, portA)); err != nil {
		t.Errorf("new connection after the block: %v", err)
	}
	if r.blocked.Load() != 1 {
		t.Errorf("%d block verdicts, want 1", r.blocked.Load())
	}
}

// TestIDSResetTowardSender: a blocked TCP packet is answered with a reset
// to its sender.
func TestIDSResetTowardSender(t *testing.T) {
	needRoot(t)
	l := newLab(t, 1, 2, Config{})
	h := l.hosts[0]
	web, app := l.w(1, 1), l.w(1, 2)
	st := l.state(h, shopPolicy, 1)
	st.IDS = &IDSState{Workloads: []IDSWorkload{{Name: "w1", Interface: web.Interface, Mode: IDSPrevent}}}
	if _, err := l.tables["h1"].Apply(st); err != nil {
		t.Fatal(err)
	}
	r := &blockingReader{blockFrom: web.IPv4, blockedFlows: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.run(ctx, t, h, DefaultIDSQueue) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(100 * time.Millisecond)
	c := dialGreeted(t, web, app, false, portA)
	if _, err := c.Write([]byte("EXPLOIT")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(slowTimeout))
	start := time.Now()
	_, err := c.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("blocked sender: read %v, want a reset", err)
	} else {
		t.Logf("reset after %v", time.Since(start))
	}
}

// TestIDSQueueBalanceKeepsFlows: with several IDS queues the kernel's
// flow hash sends both directions of a connection to one queue (so one
// reader, one flow table, sees the whole connection).
func TestIDSQueueBalanceKeepsFlows(t *testing.T) {
	needRoot(t)
	const first, n = 40, 4
	l := newLab(t, 1, 3, Config{IDSQueue: first, IDSQueues: n})
	h := l.hosts[0]
	web, app, db := l.w(1, 1), l.w(1, 2), l.w(1, 3)
	st := l.state(h, shopPolicy, 1)
	st.IDS = &IDSState{Workloads: []IDSWorkload{{Name: "w2", Interface: app.Interface, Mode: IDSPrevent}}}
	if _, err := l.tables["h1"].Apply(st); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	queuesOf := map[string]map[uint16]bool{} // flow -> queues it was seen on
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for q := uint16(first); q < first+n; q++ {
		qc, err := nfq.Open(q, h.NS.Fd(), nfq.FlagGSO)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer qc.Close()
			for ctx.Err() == nil {
				qc.Receive(func(p *nfq.Packet) {
					k, _ := flowKey(p.Payload)
					mu.Lock()
					if queuesOf[k] == nil {
						queuesOf[k] = map[uint16]bool{}
					}
					queuesOf[k][q] = true
					mu.Unlock()
					qc.Verdict(p.ID, nfq.Accept, p.Mark)
				})
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(100 * time.Millisecond)
	// web -> app:portA and app -> db:portA, eight connections each.
	for i := 0; i < 8; i++ {
		for _, p := range [][2]*netlab.Workload{{web, app}, {app, db}} {
			if err := echoOK(dialGreeted(t, p[0], p[1], false, portA)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queuesOf) != 16 {
		t.Errorf("%d flows seen, want 16", len(queuesOf))
	}
	used := map[uint16]int{}
	for k, qs := range queuesOf {
		if len(qs) != 1 {
			t.Errorf("flow %x reached queues %v, want one", k, qs)
		}
		for q := range qs {
			used[q]++
		}
	}
	t.Logf("flows per queue: %v", used)
}
