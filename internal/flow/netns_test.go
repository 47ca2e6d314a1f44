package flow

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// lab is three network namespaces: a client and a server workload routed
// through a host, whose forward hook runs a small nft table that marks
// allowed connections with a rule id and logs dropped packets to NFLOG, the
// way the data plane does.
//
//	client 10.77.1.2 fd77:1::2 (and 10.77.1.3, not a workload)
//	  | c0 - h1
//	host (forwarding, conntrack acct and timestamps on)
//	  | h2 - s0
//	server 10.77.2.2 fd77:2::2 (and 10.77.2.3, not a workload)
type lab struct {
	t                    *testing.T
	client, host, server string
	hostNS               netns.NsHandle
}

const (
	labGroup = 77
	// Marks, in the data plane's layout (see internal/flow/markcheck).
	markAllowTCP  = 0x0100002a // allow, rule 42
	markAllowUDP  = 0x0100002b // allow, rule 43
	markAllowICMP = 0x0100002c // allow, rule 44
	markDrop      = 0x02000063 // drop, rule 99
	markReject    = 0x03000064 // reject, rule 100
)

var (
	clientIP4, clientIP6 = netip.MustParseAddr("10.77.1.2"), netip.MustParseAddr("fd77:1::2")
	serverIP4, serverIP6 = netip.MustParseAddr("10.77.2.2"), netip.MustParseAddr("fd77:2::2")
	strangerClient       = netip.MustParseAddr("10.77.1.3")
	strangerServer       = netip.MustParseAddr("10.77.2.3")
)

func labWorkload(a netip.Addr) string {
	switch a {
	case clientIP4, clientIP6:
		return "client"
	case serverIP4, serverIP6:
		return "server"
	}
	return ""
}

const labRules = `
table inet bhflowtest {
	chain forward {
		type filter hook forward priority 0; policy accept;
		ct state established,related accept
		ct state invalid drop
		iifname "h1" tcp dport 8080 ct mark set 0x0100002a accept
		iifname "h1" udp dport 5353 ct mark set 0x0100002b accept
		iifname "h1" icmp type echo-request ct mark set 0x0100002c accept
		iifname "h1" icmpv6 type echo-request ct mark set 0x0100002c accept
		iifname "h1" tcp dport 9999 meta mark set 0x02000063 log group 77 drop
		iifname "h1" udp dport 9998 meta mark set 0x03000064 log group 77 reject
		iifname "h1" tcp dport 9090 accept
	}
}
`

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, nft tables and reads conntrack")
	}
	for _, tool := range []string{"ip", "nft", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s in PATH", tool)
		}
	}
}

func newLab(t *testing.T) *lab {
	needRoot(t)
	id := make([]byte, 3)
	rand.Read(id)
	p := "bhf" + hex.EncodeToString(id)
	l := &lab{t: t, client: p + "c", host: p + "h", server: p + "s"}
	for _, ns := range []string{l.client, l.host, l.server} {
		l.run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		l.run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	l.run("ip", "-n", l.host, "link", "add", "h1", "type", "veth", "peer", "name", "c0", "netns", l.client)
	l.run("ip", "-n", l.host, "link", "add", "h2", "type", "veth", "peer", "name", "s0", "netns", l.server)
	addrs := []struct{ ns, dev, addr string }{
		{l.client, "c0", "10.77.1.2/24"}, {l.client, "c0", "10.77.1.3/24"}, {l.client, "c0", "fd77:1::2/64"},
		{l.host, "h1", "10.77.1.1/24"}, {l.host, "h1", "fd77:1::1/64"},
		{l.host, "h2", "10.77.2.1/24"}, {l.host, "h2", "fd77:2::1/64"},
		{l.server, "s0", "10.77.2.2/24"}, {l.server, "s0", "10.77.2.3/24"}, {l.server, "s0", "fd77:2::2/64"},
	}
	for _, a := range addrs {
		args := []string{"-n", a.ns, "addr", "add", a.addr, "dev", a.dev}
		if strings.Contains(a.addr, ":") {
			args = append(args, "nodad")
		}
		l.run("ip", args...)
	}
	for _, d := range [][2]string{{l.client, "c0"}, {l.host, "h1"}, {l.host, "h2"}, {l.server, "s0"}} {
		l.run("ip", "-n", d[0], "link", "set", d[1], "up")
	}
	l.run("ip", "-n", l.client, "route", "add", "default", "via", "10.77.1.1")
	l.run("ip", "-n", l.client, "-6", "route", "add", "default", "via", "fd77:1::1")
	l.run("ip", "-n", l.server, "route", "add", "default", "via", "10.77.2.1")
	l.run("ip", "-n", l.server, "-6", "route", "add", "default", "via", "fd77:2::1")
	l.sysctl(l.host,
		"net.ipv4.ip_forward=1",
		"net.ipv6.conf.all.forwarding=1",
		"net.netfilter.nf_conntrack_acct=1",
		"net.netfilter.nf_conntrack_timestamp=1",
		"net.netfilter.nf_conntrack_events=1",
		// Short timeouts, so that closed connections are destroyed
		// (and reported) within the test.
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait=1",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait=1",
		"net.netfilter.nf_conntrack_tcp_timeout_last_ack=1",
		"net.netfilter.nf_conntrack_tcp_timeout_close=1",
		"net.netfilter.nf_conntrack_udp_timeout=1",
		"net.netfilter.nf_conntrack_udp_timeout_stream=1",
		"net.netfilter.nf_conntrack_icmp_timeout=1",
		"net.netfilter.nf_conntrack_icmpv6_timeout=1",
	)
	l.runInput(labRules, "ip", "netns", "exec", l.host, "nft", "-f", "-")
	h, err := netns.GetFromName(l.host)
	if err != nil {
		t.Fatal(err)
	}
	l.hostNS = h
	t.Cleanup(func() { h.Close() })
	return l
}

func (l *lab) run(name string, args ...string) { l.t.Helper(); l.runInput("", name, args...) }

func (l *lab) runInput(stdin, name string, args ...string) {
	l.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (l *lab) sysctl(ns string, kv ...string) {
	l.t.Helper()
	l.run("ip", append([]string{"netns", "exec", ns, "sysctl", "-q", "-w"}, kv...)...)
}

// in runs fn on an OS thread switched into the named namespace: sockets it
// opens stay there. Tests only; the collector itself takes a namespace fd.
func in(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked, and dies with the goroutine, unless it
		// is back in its own namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func (l *lab) listen(network, addr string) net.Listener {
	l.t.Helper()
	var ln net.Listener
	if err := in(l.server, func() (err error) { ln, err = net.Listen(network, addr); return err }); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	return ln
}

func (l *lab) dial(network, laddr, raddr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := in(l.client, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		if laddr != "" {
			if strings.HasPrefix(network, "tcp") {
				d.LocalAddr, err = net.ResolveTCPAddr(network, laddr)
			} else {
				d.LocalAddr, err = net.ResolveUDPAddr(network, laddr)
			}
			if err != nil {
				return err
			}
		}
		c, err = d.Dial(network, raddr)
		return err
	})
	return c, err
}

// collector runs a Collector and a DropReader on the lab's host and a
// Shipper into a sender that keeps every record.
type collected struct {
	mu   sync.Mutex
	recs []Record
}

func (c *collected) Send(ctx context.Context, recs []Record) error {
	c.mu.Lock()
	c.recs = append(c.recs, recs...)
	c.mu.Unlock()
	return nil
}

func (c *collected) find(match func(r *Record) bool) []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Record
	for i := range c.recs {
		if match(&c.recs[i]) {
			out = append(out, c.recs[i])
		}
	}
	return out
}

func (l *lab) collect(dump time.Duration, filter bool) (*collected, *Collector, *DropReader) {
	l.t.Helper()
	buf := NewBuffer(10000)
	cfg := CollectorConfig{Host: "h1", NetNS: int(l.hostNS), DumpInterval: dump, Workload: labWorkload, DecodeMark: testMark, Log: quietLog()}
	if filter {
		cfg.DumpMark, cfg.DumpMask = 0x01000000, 0x03000000 // action: allow
	}
	col, err := NewCollector(cfg, buf)
	if err != nil {
		l.t.Fatal(err)
	}
	drops, err := NewDropReader(DropReaderConfig{Host: "h1", NetNS: int(l.hostNS), Group: labGroup, Window: 300 * time.Millisecond, Workload: labWorkload, DecodeMark: testMark, Log: quietLog()}, buf)
	if err != nil {
		l.t.Fatal(err)
	}
	out := &collected{}
	sh := NewShipper(buf, out, ShipperConfig{MaxBatch: 100, MaxDelay: 20 * time.Millisecond, Log: quietLog()})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{col.Run, drops.Run, sh.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				l.t.Error(err)
			}
		}()
	}
	l.t.Cleanup(func() { cancel(); wg.Wait() })
	for _, ready := range []<-chan struct{}{col.Ready(), drops.Ready()} {
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			l.t.Fatal("collector did not start")
		}
	}
	return out, col, drops
}

// exchange opens a TCP connection, sends up bytes, receives down bytes and
// closes. It returns the client's port.
func (l *lab) exchange(network, laddr, raddr string, up, down int) uint16 {
	l.t.Helper()
	c, err := l.dial(network, laddr, raddr, 5*time.Second)
	if err != nil {
		l.t.Fatalf("dial %s: %v", raddr, err)
	}
	defer c.Close()
	if _, err := c.Write(bytes.Repeat([]byte{'u'}, up)); err != nil {
		l.t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != down {
		l.t.Fatalf("read %d bytes (%v), want %d", len(got), err, down)
	}
	return uint16(c.LocalAddr().(*net.TCPAddr).Port)
}

// serveTCP reads everything a client sends, then answers with down bytes.
func serveTCP(ln net.Listener, down int) (received chan int) {
	received = make(chan int, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				c.Write(bytes.Repeat([]byte{'d'}, down))
				received <- int(n)
			}()
		}
	}()
	return received
}

func endOf(out *collected, proto uint8, dst netip.Addr, dport uint16) func() []Record {
	return func() []Record {
		return out.find(func(r *Record) bool {
			return r.Kind == KindEnd && r.Proto == proto && r.Dst == dst && r.DstPort == dport
		})
	}
}

func TestCollectorInNamespaces(t *testing.T) {
	l := newLab(t)
	out, col, drops := l.collect(200*time.Millisecond, false)
	t0 := time.Now()

	serveTCP(l.listen("tcp", "10.77.2.2:8080"), 3000)
	serveTCP(l.listen("tcp6", "[fd77:2::2]:8080"), 3000)
	serveTCP(l.listen("tcp", "10.77.2.3:8080"), 10)
	serveTCP(l.listen("tcp", "10.77.2.2:9090"), 10)
	var upc net.PacketConn
	if err := in(l.server, func() (err error) { upc, err = net.ListenPacket("udp4", "10.77.2.2:5353"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upc.Close() })
	go func() {
		b := make([]byte, 2000)
		for i := 0; ; i++ {
			_, from, err := upc.ReadFrom(b)
			if err != nil {
				return
			}
			if i == 2 {
				upc.WriteTo(make([]byte, 50), from)
			}
		}
	}()

	// Allowed: TCP over IPv4 and IPv6, UDP, ICMP echo over both.
	port4 := l.exchange("tcp4", "", "10.77.2.2:8080", 10000, 3000)
	port6 := l.exchange("tcp6", "", "[fd77:2::2]:8080", 10000, 3000)
	uc, err := l.dial("udp4", "", "10.77.2.2:5353", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		uc.Write(make([]byte, 100))
	}
	uc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := uc.Read(make([]byte, 100)); err != nil {
		t.Fatalf("udp answer: %v", err)
	}
	uc.Close()
	l.run("ip", "netns", "exec", l.client, "ping", "-q", "-c", "2", "-i", "0.2", "-W", "2", "10.77.2.2")
	l.run("ip", "netns", "exec", l.client, "ping", "-q", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd77:2::2")
	// Not reported: allowed without our mark, and marked between two
	// addresses that are not workloads.
	l.exchange("tcp4", "", "10.77.2.2:9090", 1, 10)
	l.exchange("tcp4", "10.77.1.3:0", "10.77.2.3:8080", 1, 10)
	// Denied: three connection attempts to a dropped port, and UDP to a
	// rejected one.
	for range 3 {
		if c, err := l.dial("tcp4", "", "10.77.2.2:9999", 300*time.Millisecond); err == nil {
			c.Close()
			t.Fatal("connection to the dropped port succeeded")
		}
	}
	if c, err := l.dial("tcp6", "", "[fd77:2::2]:9999", 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("IPv6 connection to the dropped port succeeded")
	}
	rc, err := l.dial("udp4", "", "10.77.2.2:9998", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rc.Write([]byte("x"))
	rc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := rc.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("rejected UDP: read error %v, want connection refused", err)
	}
	rc.Close()

	tcp4, tcp6 := endOf(out, 6, serverIP4, 8080), endOf(out, 6, serverIP6, 8080)
	udpEnd := endOf(out, 17, serverIP4, 5353)
	icmp4 := func() []Record {
		return out.find(func(r *Record) bool { return r.Kind == KindEnd && r.Proto == 1 && r.Dst == serverIP4 })
	}
	icmp6 := func() []Record {
		return out.find(func(r *Record) bool { return r.Kind == KindEnd && r.Proto == 58 && r.Dst == serverIP6 })
	}
	dropRecs := func(rule uint32) func() []Record {
		return func() []Record {
			return out.find(func(r *Record) bool { return r.Kind == KindDrop && r.RuleID == rule })
		}
	}
	waitFor(t, "every end and drop record", func() bool {
		for _, f := range []func() []Record{tcp4, tcp6, udpEnd, icmp4, icmp6, dropRecs(99), dropRecs(100)} {
			if len(f()) == 0 {
				return false
			}
		}
		return true
	})
	t1 := time.Now()

	check := func(name string, recs []Record, want Record) *Record {
		t.Helper()
		if len(recs) != 1 {
			t.Errorf("%s: %d end records, want 1: %+v", name, len(recs), recs)
			return nil
		}
		r := &recs[0]
		if r.Src != want.Src || r.Dst != want.Dst || r.Proto != want.Proto || r.DstPort != want.DstPort ||
			(want.SrcPort != 0 && r.SrcPort != want.SrcPort) || r.ICMPType != want.ICMPType || r.ICMPCode != want.ICMPCode {
			t.Errorf("%s: tuple %v:%d -> %v:%d proto %d icmp %d/%d, want %v:%d -> %v:%d proto %d icmp %d/%d", name,
				r.Src, r.SrcPort, r.Dst, r.DstPort, r.Proto, r.ICMPType, r.ICMPCode,
				want.Src, want.SrcPort, want.Dst, want.DstPort, want.Proto, want.ICMPType, want.ICMPCode)
		}
		if r.RuleID != want.RuleID || r.Verdict != want.Verdict {
			t.Errorf("%s: rule %d %v, want %d %v", name, r.RuleID, r.Verdict, want.RuleID, want.Verdict)
		}
		if r.SrcWorkload != want.SrcWorkload || r.DstWorkload != want.DstWorkload || r.Host != "h1" {
			t.Errorf("%s: workloads %q -> %q on %q", name, r.SrcWorkload, r.DstWorkload, r.Host)
		}
		if r.Start.Before(t0.Add(-time.Second)) || r.Start.After(r.End) || r.End.After(t1) || r.ID == "" {
			t.Errorf("%s: id %q start %v end %v, test ran %v..%v", name, r.ID, r.Start, r.End, t0, t1)
		}
		if want.SrcBytes != 0 && (r.SrcBytes != want.SrcBytes || r.SrcPackets != want.SrcPackets || r.DstBytes != want.DstBytes || r.DstPackets != want.DstPackets) {
			t.Errorf("%s: %d bytes/%d packets out, %d/%d back; want %d/%d, %d/%d", name,
				r.SrcBytes, r.SrcPackets, r.DstBytes, r.DstPackets, want.SrcBytes, want.SrcPackets, want.DstBytes, want.DstPackets)
		}
		return r
	}
	tcpBytes := func(name string, r *Record, up, down int, ipHeader uint64) {
		t.Helper()
		// Each segment adds an IP header and a TCP header of 20 to 60
		// bytes (options); the payload is exact.
		lo := func(payload int, pkts uint64) uint64 { return uint64(payload) + pkts*(ipHeader+20) }
		hi := func(payload int, pkts uint64) uint64 { return uint64(payload) + pkts*(ipHeader+60) }
		if r.SrcBytes < lo(up, r.SrcPackets) || r.SrcBytes > hi(up, r.SrcPackets) || r.DstBytes < lo(down, r.DstPackets) || r.DstBytes > hi(down, r.DstPackets) {
			t.Errorf("%s: %d bytes in %d packets out, %d in %d back: not %d and %d bytes of payload", name, r.SrcBytes, r.SrcPackets, r.DstBytes, r.DstPackets, up, down)
		}
		t.Logf("%s: %s %v:%d -> %v:%d rule %d %v, out %d B/%d pkts, back %d B/%d pkts, %v", name, r.ID, r.Src, r.SrcPort, r.Dst, r.DstPort, r.RuleID, r.Verdict, r.SrcBytes, r.SrcPackets, r.DstBytes, r.DstPackets, r.End.Sub(r.Start))
	}
	if r := check("tcp4", tcp4(), Record{Src: clientIP4, Dst: serverIP4, Proto: 6, SrcPort: port4, DstPort: 8080, RuleID: 42, Verdict: Allow, SrcWorkload: "client", DstWorkload: "server"}); r != nil {
		tcpBytes("tcp4", r, 10000, 3000, 20)
	}
	if r := check("tcp6", tcp6(), Record{Src: clientIP6, Dst: serverIP6, Proto: 6, SrcPort: port6, DstPort: 8080, RuleID: 42, Verdict: Allow, SrcWorkload: "client", DstWorkload: "server"}); r != nil {
		tcpBytes("tcp6", r, 10000, 3000, 40)
	}
	// UDP and ICMP sizes are exact: 3 x (100+8+20) out, 50+8+20 back; ping
	// sends 56 bytes of data.
	check("udp", udpEnd(), Record{Src: clientIP4, Dst: serverIP4, Proto: 17, DstPort: 5353, RuleID: 43, Verdict: Allow, SrcWorkload: "client", DstWorkload: "server",
		SrcBytes: 384, SrcPackets: 3, DstBytes: 78, DstPackets: 1})
	check("icmp", icmp4(), Record{Src: clientIP4, Dst: serverIP4, Proto: 1, ICMPType: 8, RuleID: 44, Verdict: Allow, SrcWorkload: "client", DstWorkload: "server",
		SrcBytes: 2 * 84, SrcPackets: 2, DstBytes: 2 * 84, DstPackets: 2})
	check("icmpv6", icmp6(), Record{Src: clientIP6, Dst: serverIP6, Proto: 58, ICMPType: 128, RuleID: 44, Verdict: Allow, SrcWorkload: "client", DstWorkload: "server",
		SrcBytes: 2 * 104, SrcPackets: 2, DstBytes: 2 * 104, DstPackets: 2})

	// Drops: the three attempts (and their SYN retransmissions) are one
	// record; the source port varies, so it is 0.
	time.Sleep(400 * time.Millisecond) // let the drop window close
	var d, d6 []Record
	for _, r := range dropRecs(99)() {
		if r.Src.Is6() {
			d6 = append(d6, r)
		} else {
			d = append(d, r)
		}
	}
	if len(d6) == 0 || d6[0].Src != clientIP6 || d6[0].Dst != serverIP6 || d6[0].DstPort != 9999 || d6[0].Verdict != Drop || d6[0].SrcBytes != d6[0].SrcPackets*80 {
		t.Errorf("IPv6 drop records %+v, want SYNs of 80 bytes from %v to [%v]:9999", d6, clientIP6, serverIP6)
	}
	var dropped uint64
	for _, r := range d {
		dropped += r.SrcPackets
		if r.Src != clientIP4 || r.Dst != serverIP4 || r.Proto != 6 || r.DstPort != 9999 || r.Verdict != Drop || r.SrcWorkload != "client" || r.DstWorkload != "server" {
			t.Errorf("drop record %+v", r)
		}
	}
	if dropped < 3 || len(d) > 3 {
		t.Errorf("drops: %d packets in %d records, want >= 3 packets in at most one record per window", dropped, len(d))
	}
	if len(d) == 1 && d[0].SrcPort != 0 {
		t.Errorf("drop record from several source ports has source port %d", d[0].SrcPort)
	}
	for _, r := range d {
		t.Logf("drop: %s %v -> %v:%d rule %d %v, %d packets, %d bytes, src port %d", r.ID, r.Src, r.Dst, r.DstPort, r.RuleID, r.Verdict, r.SrcPackets, r.SrcBytes, r.SrcPort)
	}
	rj := dropRecs(100)()
	if len(rj) != 1 || rj[0].Verdict != Reject || rj[0].Proto != 17 || rj[0].DstPort != 9998 || rj[0].SrcPackets != 1 || rj[0].SrcBytes != 29 {
		t.Errorf("reject records %+v, want one UDP packet of 29 bytes to 9998, rejected by rule 100", rj)
	}

	if stray := out.find(func(r *Record) bool {
		return r.DstPort == 9090 || r.Src == strangerClient || r.Dst == strangerServer
	}); len(stray) != 0 {
		t.Errorf("records of connections that are not ours or not local: %+v", stray)
	}
	cs, ds := col.Stats(), drops.Stats()
	if cs.Skipped < 2 || cs.EventErrors != 0 || cs.DumpErrors != 0 || cs.NoTimestamp != 0 {
		t.Errorf("collector stats %+v", cs)
	}
	if ds.Malformed != 0 || ds.Unmarked != 0 || ds.Packets < 5 {
		t.Errorf("drop reader stats %+v", ds)
	}
	t.Logf("collector %+v", cs)
	t.Logf("drop reader %+v", ds)
}

// TestLongFlow: a transfer that outlives several dump intervals produces
// updates with growing totals and one end, all with one ID, whose totals
// are the bytes sent.
func TestLongFlow(t *testing.T) {
	l := newLab(t)
	out, _, _ := l.collect(250*time.Millisecond, true) // the kernel filters the dumps
	received := serveTCP(l.listen("tcp", "10.77.2.2:8080"), 0)

	c, err := l.dial("tcp4", "", "10.77.2.2:8080", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	const chunks = 20 // every 100ms: 2s, 1.25 MiB
	for range chunks {
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Close()
	sent := chunks * len(chunk)
	if n := <-received; n != sent {
		t.Fatalf("server received %d bytes, want %d", n, sent)
	}
	ours := func(r *Record) bool { return r.Proto == 6 && r.DstPort == 8080 && r.Dst == serverIP4 }
	waitFor(t, "the end record", func() bool {
		return len(out.find(func(r *Record) bool { return ours(r) && r.Kind == KindEnd })) > 0
	})
	time.Sleep(300 * time.Millisecond) // anything after the end would show now
	recs := out.find(ours)
	var updates []Record
	var end *Record
	for i := range recs {
		r := &recs[i]
		if r.ID != recs[0].ID {
			t.Errorf("records of one connection with IDs %s and %s", recs[0].ID, r.ID)
		}
		switch r.Kind {
		case KindUpdate:
			if end != nil {
				t.Errorf("update after the end: %+v", r)
			}
			updates = append(updates, *r)
		case KindEnd:
			if end != nil {
				t.Errorf("second end: %+v", r)
			}
			end = r
		}
	}
	if len(updates) < 4 {
		t.Errorf("%d updates over 2s with a 250ms dump, want at least 4", len(updates))
	}
	prev := Record{}
	for _, u := range updates {
		if u.SrcBytes < prev.SrcBytes || u.SrcPackets < prev.SrcPackets || !u.End.IsZero() || u.Seen.Before(prev.Seen) {
			t.Errorf("update totals go back or claim an end: %d after %d", u.SrcBytes, prev.SrcBytes)
		}
		t.Logf("update at +%v: %d bytes, %d packets out; %d bytes back", u.Seen.Sub(u.Start).Round(time.Millisecond), u.SrcBytes, u.SrcPackets, u.DstBytes)
		prev = u
	}
	if end.SrcBytes < prev.SrcBytes || end.SrcBytes < uint64(sent)+end.SrcPackets*40 || end.SrcBytes > uint64(sent)+end.SrcPackets*80 {
		t.Errorf("end: %d bytes in %d packets; want %d bytes of payload plus 40-80 bytes of headers a packet", end.SrcBytes, end.SrcPackets, sent)
	}
	if end.End.Sub(end.Start) < 2*time.Second || end.RuleID != 42 || end.Verdict != Allow {
		t.Errorf("end: %v..%v rule %d %v", end.Start, end.End, end.RuleID, end.Verdict)
	}
	t.Logf("end: %s %d bytes in %d packets out (payload %d), %d bytes back, lasted %v", end.ID, end.SrcBytes, end.SrcPackets, sent, end.DstBytes, end.End.Sub(end.Start).Round(time.Millisecond))
}
