package l7

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead/bulkhead/internal/nft"
)

// wordClassifier is the test classifier: the first payload's first word
// is the app ("APP_TLS/1.2" gives a TLS version), final at once.
type wordClassifier struct{ ctx nft.L7Context }

func (w *wordClassifier) Feed(fromClient bool, p []byte) (nft.L7Context, bool) {
	app, ver, _ := strings.Cut(strings.Fields(string(p) + " x")[0], "/")
	w.ctx = nft.L7Context{App: app, TLSVersion: ver}
	return w.ctx, true
}
func (w *wordClassifier) Finish() nft.L7Context { return w.ctx }

// tcp4 builds an IPv4 TCP packet.
func tcp4(src, dst netip.Addr, sport, dport uint16, seq uint32, payload string) []byte {
	b := make([]byte, 40+len(payload))
	b[0], b[9] = 0x45, 6
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s4, d4 := src.As4(), dst.As4()
	copy(b[12:], s4[:])
	copy(b[16:], d4[:])
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint32(b[24:], seq)
	b[32], b[33] = 5<<4, 0x18
	copy(b[40:], payload)
	return b
}

var (
	cli = netip.MustParseAddr("10.0.0.1")
	srv = netip.MustParseAddr("10.0.0.2")
)

func testReader(t *testing.T, maxPackets int) *Reader {
	t.Helper()
	r, err := New(Config{MaxPackets: maxPackets, MaxConns: 2,
		Classifier: func(uint8) Classifier { return &wordClassifier{} },
		IfName: func(i uint32) (string, error) {
			return map[uint32]string{1: "vc", 2: "vs"}[i], nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	st := &nft.HostState{
		Identities: []nft.IdentityRange{{Lo: cli, Hi: cli, Identity: 1}, {Lo: srv, Hi: srv, Identity: 2}},
		Profiles:   []nft.Profile{{Apps: []nft.AppMatch{{Name: "APP_TLS", MinVersion: "1.2"}}}},
		Workloads: []nft.Workload{
			{Name: "c", Interface: "vc", Egress: []nft.Entry{
				{Peer: 2, Proto: nft.ProtoTCP, Ports: nft.Port(8443), Verdict: nft.Verdict{Rule: 20, Action: nft.Allow}},
			}},
			{Name: "s", Interface: "vs", Ingress: []nft.Entry{
				{Peer: 1, Proto: nft.ProtoTCP, Ports: nft.Port(8443), Verdict: nft.Verdict{Rule: 10, Action: nft.Allow}, Profile: 1},
				{Peer: nft.AnyPeer, Proto: nft.ProtoTCP, Ports: nft.AllPorts, Verdict: nft.Verdict{Rule: 11, Action: nft.Reject}},
			}},
		},
		EgressDefault:  nft.Verdict{Rule: 1, Action: nft.Allow},
		IngressDefault: nft.Verdict{Rule: 1, Action: nft.Drop},
	}
	if err := r.SetState(st); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		payload string
		want    nft.Mark
	}{
		{"APP_TLS/1.3 hello", nft.MakeMark(nft.Verdict{Rule: 10, Action: nft.Allow}, true)},
		{"APP_TLS/1.1 hello", nft.MakeMark(nft.Verdict{Rule: 11, Action: nft.Reject}, true)},
		{"APP_SSH banner", nft.MakeMark(nft.Verdict{Rule: 11, Action: nft.Reject}, true)},
	} {
		r := testReader(t, 4)
		// The server speaks first: a reply-direction packet.
		qp := &queuedPacket{ID: 1, Mark: uint32(nft.MarkL7Pending | nft.MarkL7Reply), InDev: 2, OutDev: 1,
			Payload: tcp4(srv, cli, 8443, 40000, 1000, tc.payload)}
		v, m := r.handle(qp)
		if v != nfRepeat || m != tc.want|nft.MarkL7Verdict {
			t.Errorf("%q: verdict %d mark %v, want repeat %v", tc.payload, v, m, tc.want)
		}
		// A later packet of the decided connection gets the same answer.
		qp.Payload = tcp4(cli, srv, 40000, 8443, 5, "more")
		qp.Mark, qp.InDev, qp.OutDev = uint32(nft.MarkL7Pending), 1, 2
		if v2, m2 := r.handle(qp); v2 != v || m2 != m {
			t.Errorf("%q: second packet: %d %v, want %d %v", tc.payload, v2, m2, v, m)
		}
		if s := r.Stats(); s.Decided != 1 || s.Repeats != 1 {
			t.Errorf("%q: stats %+v", tc.payload, s)
		}
		// A new connection reusing the tuple is classified again.
		qp.Payload = tcp4(cli, srv, 40000, 8443, 1<<30, "APP_SSH")
		if v3, m3 := r.handle(qp); v3 != nfRepeat || m3 != nft.MakeMark(nft.Verdict{Rule: 11, Action: nft.Reject}, true)|nft.MarkL7Verdict {
			t.Errorf("%q: reused tuple: %d %v, want a new decision (reject)", tc.payload, v3, m3)
		}
	}
}

func TestDecideWaitsThenGivesUp(t *testing.T) {
	r := testReader(t, 2)
	r.cfg.Classifier = func(uint8) Classifier { return never{} }
	qp := &queuedPacket{ID: 1, Mark: uint32(nft.MarkL7Pending), InDev: 1, OutDev: 2, Payload: tcp4(cli, srv, 40000, 8443, 1, "a")}
	if v, m := r.handle(qp); v != nfAccept || m != 0 {
		t.Fatalf("first packet: %d %v, want accept", v, m)
	}
	// A retransmission is not fed again.
	if v, _ := r.handle(qp); v != nfAccept {
		t.Fatalf("retransmission: %d", v)
	}
	qp.Payload = tcp4(cli, srv, 40000, 8443, 2, "b")
	v, m := r.handle(qp)
	want := nft.MakeMark(nft.Verdict{Rule: 11, Action: nft.Reject}, true) // no app: the L7 entry does not match
	if v != nfRepeat || m != want|nft.MarkL7Verdict {
		t.Fatalf("after MaxPackets: %d %v, want repeat %v", v, m, want)
	}
}

type never struct{}

func (never) Feed(bool, []byte) (nft.L7Context, bool) { return nft.L7Context{}, false }
func (never) Finish() nft.L7Context                   { return nft.L7Context{} }

func TestEviction(t *testing.T) {
	r := testReader(t, 10)
	r.cfg.Classifier = func(uint8) Classifier { return never{} }
	for i := range 5 {
		r.handle(&queuedPacket{ID: 1, Mark: uint32(nft.MarkL7Pending), InDev: 1, OutDev: 2,
			Payload: tcp4(cli, srv, uint16(40000+i), 8443, 1, "x")})
	}
	if s := r.Stats(); s.Conns != 2 || s.Evicted != 3 {
		t.Fatalf("stats %+v, want 2 connections and 3 evicted", s)
	}
}

func TestMalformed(t *testing.T) {
	r := testReader(t, 10)
	for _, b := range [][]byte{nil, {0x45}, {0x60, 0, 0, 0}, tcp4(cli, srv, 1, 2, 3, "x")[:30]} {
		if v, _ := r.handle(&queuedPacket{Payload: b}); v != nfDrop {
			t.Errorf("%x: verdict %d, want drop (fail-closed)", b, v)
		}
	}
	if r.Stats().Malformed != 4 {
		t.Fatalf("stats %+v", r.Stats())
	}
}

func FuzzParsePacket(f *testing.F) {
	f.Add(tcp4(cli, srv, 1, 443, 7, "GET / HTTP/1.1\r\n"))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 17, 64})
	v6 := make([]byte, 48)
	v6[0], v6[5], v6[6] = 0x60, 8, 0
	f.Add(v6)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet
		if parsePacket(b, &p) == nil && len(p.payload) > len(b) {
			t.Fatal("payload longer than the packet")
		}
	})
}

// With CPU fanout a connection's two directions may come through two
// queues, each on its own thread: they share the connection table.
func TestDecideFromTwoQueues(t *testing.T) {
	const conns = 200
	r := testReader(t, 4)
	r.ring = make([]connKey, conns) // follow them all
	var wg sync.WaitGroup
	for q := range 2 {
		wg.Go(func() {
			for i := range conns {
				sport := uint16(30000 + i)
				qp := &queuedPacket{ID: uint32(i), Mark: uint32(nft.MarkL7Pending), InDev: 1, OutDev: 2,
					Payload: tcp4(cli, srv, sport, 8443, 1, "APP_TLS/1.3 hello")}
				if q == 1 { // the server's side of the same connection
					qp.Mark |= uint32(nft.MarkL7Reply)
					qp.InDev, qp.OutDev = 2, 1
					qp.Payload = tcp4(srv, cli, 8443, sport, 1000, "APP_TLS/1.3 hello")
				}
				want := nft.MakeMark(nft.Verdict{Rule: 10, Action: nft.Allow}, true) | nft.MarkL7Verdict
				if v, m := r.handle(qp); v != nfRepeat || m != want {
					t.Errorf("queue %d, connection %d: verdict %d mark %v, want repeat %v", q, i, v, m, want)
					return
				}
			}
		})
	}
	wg.Wait()
	// Each connection is decided once, by whichever direction came first.
	if s := r.Stats(); s.Decided != conns || s.Repeats != conns || s.Conns != conns {
		t.Fatalf("stats %+v, want %d decided, %d repeats, %d followed", s, conns, conns, conns)
	}
}

func TestNewQueueRange(t *testing.T) {
	if _, err := New(Config{Queue: 65535, Queues: 2}); err == nil || !strings.Contains(err.Error(), "65535") {
		t.Fatalf("queues 65535-65536: err %v, want a range error", err)
	}
	if _, err := New(Config{Queue: 65534, Queues: 2}); err != nil {
		t.Fatalf("queues 65534-65535: %v", err)
	}
}
