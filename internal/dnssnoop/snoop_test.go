package dnssnoop

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	srv4 = netip.MustParseAddrPort("192.0.2.53:53")
	cli4 = netip.MustParseAddrPort("10.1.0.1:40000")
	srv6 = netip.MustParseAddrPort("[2001:db8::53]:53")
	cli6 = netip.MustParseAddrPort("[2001:db8::1]:40000")
)

func newSnooper(t testing.TB, cfg SnooperConfig, ccfg CacheConfig) (*Snooper, *Cache, *[]netip.Addr) {
	t.Helper()
	c := newCache(t, ccfg)
	var changed []netip.Addr
	cfg.OnChange = func(ips []netip.Addr) { changed = append(changed, ips...) }
	s, err := NewSnooper(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, &changed
}

func TestSnoopUDP(t *testing.T) {
	s, c, changed := newSnooper(t, SnooperConfig{}, CacheConfig{})
	msg := response(t, 0, "www.example.test.", cname("www.example.test.", 30, "edge.cdn.test."), a("edge.cdn.test.", 20, "192.0.2.10"))
	s.Handle(udpPacket(srv4, cli4, msg), t0)
	s.Handle(udpPacket(srv6, cli6, response(t, 0, "v6.example.test.", aaaa("v6.example.test.", 20, "2001:db8::10"))), t0)
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}; !slices.Equal(*changed, want) {
		t.Errorf("changed %v, want %v", *changed, want)
	}
	if got := names(c, "192.0.2.10", t0); len(got) != 2 {
		t.Errorf("names %v", got)
	}
	// Not DNS, a fragment, garbage, a bad message: counted, nothing else.
	s.Handle(udpPacket(netip.MustParseAddrPort("192.0.2.53:5353"), cli4, msg), t0)
	frag := udpPacket(srv4, cli4, msg)
	frag[6] = 0x20 // more fragments
	s.Handle(frag, t0)
	s.Handle([]byte{0x45, 0, 0}, t0)
	s.Handle(udpPacket(srv4, cli4, msg[:20]), t0)
	st := s.Stats()
	want := SnooperStats{Packets: 6, Answers: 2, NotDNS: 1, Fragments: 1, Malformed: 1, BadMessages: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

func TestSnoopResolvers(t *testing.T) {
	s, c, _ := newSnooper(t, SnooperConfig{Resolvers: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}}, CacheConfig{})
	msg := response(t, 0, "www.example.test.", a("www.example.test.", 20, "192.0.2.10"))
	s.Handle(udpPacket(netip.MustParseAddrPort("203.0.113.9:53"), cli4, msg), t0)
	if st := s.Stats(); st.Foreign != 1 || c.Stats().Entries != 0 {
		t.Errorf("foreign answer used: %+v", st)
	}
	s.Handle(udpPacket(srv4, cli4, msg), t0)
	if c.Stats().Entries != 1 {
		t.Errorf("resolver's answer not used")
	}
}

func TestSnoopTCP(t *testing.T) {
	s, c, _ := newSnooper(t, SnooperConfig{MaxTCPFlows: 2}, CacheConfig{})
	m1 := tcpMessage(response(t, 0, "one.example.test.", cname("one.example.test.", 30, "edge.cdn.test."), a("edge.cdn.test.", 20, "192.0.2.1")))
	m2 := tcpMessage(response(t, 0, "two.example.test.", aaaa("two.example.test.", 20, "2001:db8::2")))
	m3 := tcpMessage(response(t, 0, "three.example.test.", a("three.example.test.", 20, "192.0.2.3")))
	const isn = 0xfffffff0 // the sequence space wraps inside the stream
	seq := uint32(isn + 1)
	send := func(b []byte, flags byte) {
		s.Handle(tcpPacket(srv4, cli4, seq, flags|tcpACK, b), t0)
		seq += uint32(len(b))
	}
	s.Handle(tcpPacket(srv4, cli4, isn, tcpSYN|tcpACK, nil), t0)
	// m1 split in three, the length prefix itself split; a retransmission
	// of the first part in between.
	send(m1[:1], 0)
	s.Handle(tcpPacket(srv4, cli4, isn+1, tcpACK, m1[:1]), t0)
	send(m1[1:10], 0)
	send(m1[10:], 0)
	// m2 and the start of m3 in one segment, the rest with FIN.
	both := append(append([]byte(nil), m2...), m3[:5]...)
	send(both, 0)
	send(m3[5:], tcpFIN)
	for _, n := range []string{"192.0.2.1", "2001:db8::2", "192.0.2.3"} {
		if len(names(c, n, t0)) == 0 {
			t.Errorf("%s not learned over TCP", n)
		}
	}
	if st := s.Stats(); st.TCPMessages != 3 || st.Answers != 3 || st.TCPGaps != 0 || s.tcp.Flows() != 0 {
		t.Errorf("stats %+v, flows %d", st, s.tcp.Flows())
	}

	// A gap breaks the stream: nothing after it is trusted.
	cli := netip.MustParseAddrPort("10.1.0.1:40001")
	s.Handle(tcpPacket(srv4, cli, 100, tcpSYN|tcpACK, nil), t0)
	m4 := tcpMessage(response(t, 0, "four.example.test.", a("four.example.test.", 20, "192.0.2.4")))
	s.Handle(tcpPacket(srv4, cli, 101+3, tcpACK, m4[3:]), t0)
	s.Handle(tcpPacket(srv4, cli, 101, tcpACK, m4[:3]), t0)
	if len(names(c, "192.0.2.4", t0)) != 0 || s.Stats().TCPGaps != 1 {
		t.Errorf("gap: stats %+v", s.Stats())
	}
	// Flow cap: the gap stream plus one more; a third is refused; RST frees.
	s.Handle(tcpPacket(srv4, netip.MustParseAddrPort("10.1.0.1:40002"), 1, tcpSYN|tcpACK, nil), t0)
	s.Handle(tcpPacket(srv4, netip.MustParseAddrPort("10.1.0.1:40003"), 1, tcpSYN|tcpACK, nil), t0)
	if st := s.Stats(); st.TCPRefused != 1 || s.tcp.Flows() != 2 {
		t.Errorf("cap: stats %+v flows %d", st, s.tcp.Flows())
	}
	s.Handle(tcpPacket(srv4, cli, 200, tcpRST, nil), t0)
	if s.tcp.Flows() != 1 {
		t.Errorf("RST did not free: flows %d", s.tcp.Flows())
	}
	// Idle streams go when room is needed.
	s.Handle(tcpPacket(srv4, netip.MustParseAddrPort("10.1.0.1:40004"), 1, tcpSYN|tcpACK, nil), t0)
	s.Handle(tcpPacket(srv4, netip.MustParseAddrPort("10.1.0.1:40005"), 1, tcpSYN|tcpACK, nil), t0.Add(time.Hour))
	if st := s.Stats(); st.TCPRefused != 1 || s.tcp.Flows() != 1 {
		t.Errorf("idle: stats %+v flows %d", st, s.tcp.Flows())
	}
}

func TestSnoopTCPOverflow(t *testing.T) {
	s, _, _ := newSnooper(t, SnooperConfig{}, CacheConfig{})
	s.Handle(tcpPacket(srv4, cli4, 0, tcpSYN|tcpACK, nil), t0)
	seq := uint32(1)
	chunk := make([]byte, 1400)
	chunk[0], chunk[1] = 0xff, 0xff // a 65535-byte message that never ends
	for range 50 {
		s.Handle(tcpPacket(srv4, cli4, seq, tcpACK, chunk), t0)
		seq += uint32(len(chunk))
		chunk[0], chunk[1] = 0, 0
	}
	if st := s.Stats(); st.TCPOverflows != 1 {
		t.Errorf("stats %+v", st)
	}
	if n := len(s.tcp.flows[flowKey{srv4.Addr(), cli4.Addr(), 53, cli4.Port()}].buf); n != 0 {
		t.Errorf("broken stream still buffers %d bytes", n)
	}
}

func TestSnoopNoAllocs(t *testing.T) {
	s, _, _ := newSnooper(t, SnooperConfig{}, CacheConfig{})
	s.cfg.OnChange = nil
	udp := udpPacket(srv4, cli4, response(t, 0, "www.example.test.", cname("www.example.test.", 30, "edge.cdn.test."), a("edge.cdn.test.", 20, "192.0.2.10")))
	s.Handle(udp, t0)
	if n := testing.AllocsPerRun(1000, func() { s.Handle(udp, t0) }); n != 0 {
		t.Errorf("Handle (UDP, known answer) allocates %v times", n)
	}
	msg := tcpMessage(response(t, 0, "tcp.example.test.", a("tcp.example.test.", 20, "192.0.2.20")))
	seq := uint32(1)
	s.Handle(tcpPacket(srv4, cli4, 0, tcpSYN|tcpACK, nil), t0)
	pkts := make([][]byte, 1100)
	for i := range pkts {
		pkts[i] = tcpPacket(srv4, cli4, seq, tcpACK, msg)
		seq += uint32(len(msg))
	}
	i := 0
	s.Handle(pkts[i], t0)
	if n := testing.AllocsPerRun(1000, func() { i++; s.Handle(pkts[i], t0) }); n != 0 {
		t.Errorf("Handle (TCP, known answer) allocates %v times", n)
	}
}

func BenchmarkHandleUDP(b *testing.B) {
	s, _, _ := newSnooper(b, SnooperConfig{}, CacheConfig{})
	s.cfg.OnChange = nil
	udp := udpPacket(srv4, cli4, response(b, 0, "www.example.test.",
		cname("www.example.test.", 30, "edge.cdn.test."), a("edge.cdn.test.", 20, "192.0.2.10"), a("edge.cdn.test.", 20, "192.0.2.11")))
	b.ReportAllocs()
	for b.Loop() {
		s.Handle(udp, t0)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "answers/s")
}
