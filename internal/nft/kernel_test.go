package nft

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/bulkhead/bulkhead/internal/netlab"
)

// Workload identities in the lab: 100*host + workload. w1 is "web", w2
// "app", w3 "db" on every host.
var (
	web = []Identity{101, 201}
	app = []Identity{102, 202}
	db  = []Identity{103, 203}
)

const defaultRule = 1

// shopPolicy exercises every kind of entry: ports and ranges, any peer,
// reject and drop, one-direction rules, ICMP type and code.
var shopPolicy = policy{def: Verdict{Rule: defaultRule, Action: Drop}, rules: []rule{
	{id: 10, src: web, dst: app, proto: ProtoTCP, ports: Port(portA), action: Allow},
	{id: 11, src: app, dst: db, proto: ProtoTCP, ports: Ports(portA, portB), action: Allow},
	{id: 12, dst: db, proto: ProtoTCP, ports: Port(portC), action: Reject},
	{id: 13, src: web, dst: db, proto: ProtoUDP, ports: Port(portA), action: Allow},
	{id: 14, src: app, dst: web, proto: ProtoUDP, ports: Port(portB), action: Reject},
	// Echo request is type 8 code 0: a code-1 rule must not match it.
	{id: 15, src: web, dst: app, proto: ProtoICMP, ports: ICMPTypeCode(8, 1), action: Allow},
	{id: 16, src: web, proto: ProtoICMP, ports: ICMPTypeCode(8, 0), action: Allow},
	{id: 17, proto: ProtoICMPv6, ports: ICMPType(128), action: Allow},
	{id: 18, src: app, proto: ProtoICMP, ports: ICMPType(13), action: Allow},
	{id: 19, src: db, proto: ProtoICMP, ports: AllPorts, action: Reject},
	{id: 20, src: db, proto: ProtoTCP, ports: AllPorts, action: Drop, dir: "out", log: true},
	// Allowed out of app, but nothing lets it into web: dropped at ingress.
	{id: 21, src: app, dst: web, proto: ProtoTCP, ports: Port(portB), action: Allow, dir: "out"},
}}

func allPairs(l *lab) [][2]*netlab.Workload {
	var out [][2]*netlab.Workload
	ws := l.topo.Workloads()
	for _, a := range ws {
		for _, b := range ws {
			if a != b {
				out = append(out, [2]*netlab.Workload{a, b})
			}
		}
	}
	return out
}

func (l *lab) expectOutcome(p policy) func(probe) netlab.Outcome {
	return func(pr probe) netlab.Outcome {
		proto := pr.proto
		m := p.expect(l.ident[pr.src], l.ident[pr.dst], proto, pr.kernelPort())
		return outcome(m.Action(), proto)
	}
}

// TestEnforcement: two hosts with three workloads each; TCP, UDP and ICMP,
// IPv4 and IPv6, within a host and across hosts, allowed, dropped and
// rejected, each checked with a real connection against the policy model.
func TestEnforcement(t *testing.T) {
	l := newLab(t, 2, 3, Config{})
	l.apply(shopPolicy, 1, false)
	var probes []probe
	for _, pair := range allPairs(l) {
		for _, v6 := range []bool{false, true} {
			icmp := ProtoICMP
			if v6 {
				icmp = ProtoICMPv6
			}
			for _, pp := range []struct {
				proto uint8
				port  uint16
			}{{ProtoTCP, portA}, {ProtoTCP, portB}, {ProtoTCP, portC}, {ProtoUDP, portA}, {ProtoUDP, portB}, {icmp, 0}} {
				probes = append(probes, probe{src: pair[0], dst: pair[1], v6: v6, proto: pp.proto, port: pp.port})
			}
		}
	}
	start := time.Now()
	l.checkAll(probes, l.expectOutcome(shopPolicy))
	t.Logf("%d probes in %v", len(probes), time.Since(start))
}

// TestRejectIsQuick: a rejected client learns it at once, a dropped one
// only by timing out.
func TestRejectIsQuick(t *testing.T) {
	l := newLab(t, 2, 3, Config{})
	l.apply(shopPolicy, 1, false)
	web1, db2 := l.w(1, 1), l.w(2, 3)
	for _, v6 := range []bool{false, true} {
		// tcp/7003 to db: reject (rule 12) -> RST, well before the
		// timeout (the bound is loose for busy machines; it is typically
		// well under a millisecond).
		start := time.Now()
		o, err := web1.ProbeTCP(netip.AddrPortFrom(db2.Addr(v6), portC), slowTimeout)
		if err != nil || o != netlab.Refused || time.Since(start) > time.Second {
			t.Errorf("v6=%v reject: %v %v after %v, want refused at once", v6, o, err, time.Since(start))
		} else {
			t.Logf("v6=%v reject: refused after %v", v6, time.Since(start))
		}
		// tcp/7002 to db from web: default drop -> silence.
		start = time.Now()
		o, err = web1.ProbeTCP(netip.AddrPortFrom(db2.Addr(v6), portB), time.Second)
		if err != nil || o != netlab.Timeout || time.Since(start) < 950*time.Millisecond {
			t.Errorf("v6=%v drop: %v %v after %v, want a timeout", v6, o, err, time.Since(start))
		}
	}
}

// flowMark finds the conntrack entry of a TCP connection in a host.
func flowMark(t *testing.T, h *netlab.Host, c net.Conn) (Mark, bool) {
	t.Helper()
	ct, err := conntrack.Dial(&netlink.Config{NetNS: h.NS.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	flows, err := ct.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	for _, f := range flows {
		o := f.TupleOrig
		if o.IP.SourceAddress.Unmap() == local.Addr().Unmap() && o.Proto.SourcePort == local.Port() &&
			o.IP.DestinationAddress.Unmap() == remote.Addr().Unmap() && o.Proto.DestinationPort == remote.Port() {
			return Mark(f.Mark), true
		}
	}
	return 0, false
}

// TestConntrackMark: every allowed connection carries the deciding rule in
// its ct mark: ingress rule when both points are on the host, egress rule
// on the source's host and ingress rule on the destination's otherwise.
func TestConntrackMark(t *testing.T) {
	l := newLab(t, 2, 3, Config{})
	l.apply(shopPolicy, 1, false)
	h1, h2 := l.hosts[0], l.hosts[1]
	rule10 := Verdict{Rule: 10, Action: Allow}
	rule11 := Verdict{Rule: 11, Action: Allow}
	tests := []struct {
		src, dst *netlab.Workload
		port     uint16
		want     map[*netlab.Host]Mark
	}{
		{l.w(1, 1), l.w(1, 2), portA, map[*netlab.Host]Mark{h1: MakeMark(rule10, true)}},
		{l.w(1, 1), l.w(2, 2), portA, map[*netlab.Host]Mark{h1: MakeMark(rule10, false), h2: MakeMark(rule10, true)}},
		{l.w(2, 2), l.w(1, 3), portB, map[*netlab.Host]Mark{h2: MakeMark(rule11, false), h1: MakeMark(rule11, true)}},
	}
	for _, tt := range tests {
		for _, v6 := range []bool{false, true} {
			c, err := tt.src.Dial("tcp", netip.AddrPortFrom(tt.dst.Addr(v6), tt.port), slowTimeout)
			if err != nil {
				t.Fatalf("%s->%s: %v", tt.src.Name, tt.dst.Name, err)
			}
			for h, want := range tt.want {
				got, ok := flowMark(t, h, c)
				if !ok {
					t.Errorf("%s/%s->%s/%s v6=%v: no conntrack entry on %s", tt.src.Host.Name, tt.src.Name, tt.dst.Host.Name, tt.dst.Name, v6, h.Name)
					continue
				}
				if got != want {
					t.Errorf("%s/%s->%s/%s v6=%v on %s: ct mark %#x (%v), want %#x (%v)", tt.src.Host.Name, tt.src.Name, tt.dst.Host.Name, tt.dst.Name, v6, h.Name, uint32(got), got, uint32(want), want)
				}
			}
			c.Close()
		}
	}
	// And conntrack -L shows the same, for people.
	out, err := h1.NS.Exec(context.Background(), "conntrack", "-L", "-p", "tcp", "--dport", fmt.Sprint(portA))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), fmt.Sprintf("mark=%d", uint32(MakeMark(rule10, true)))) {
		t.Errorf("conntrack -L lacks mark=%d:\n%s", uint32(MakeMark(rule10, true)), out)
	}
}

// TestNFLOG: dropped and rejected new connections reach NFLOG with the
// deciding rule in the packet mark.
func TestNFLOG(t *testing.T) {
	const group = 42
	l := newLab(t, 1, 3, Config{LogGroup: group})
	l.apply(shopPolicy, 1, false)
	h1 := l.hosts[0]
	nf, err := nflog.Open(&nflog.Config{Group: group, Copymode: nflog.CopyPacket, Bufsize: 128, NetNS: h1.NS.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer nf.Close()
	type logged struct {
		prefix string
		mark   Mark
	}
	got := make(chan logged, 64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		var lg logged
		if a.Prefix != nil {
			lg.prefix = *a.Prefix
		}
		if a.Mark != nil {
			lg.mark = Mark(*a.Mark)
		}
		select {
		case got <- lg:
		default:
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
	web1, app1, db1 := l.w(1, 1), l.w(1, 2), l.w(1, 3)
	tests := []struct {
		name     string
		src, dst *netlab.Workload
		port     uint16
		prefix   string
		mark     Mark
	}{
		{"explicit drop at egress", db1, web1, portA, LogPrefixDrop, MakeMark(Verdict{Rule: 20, Action: Drop, Log: true}, false)},
		{"reject at egress", web1, db1, portC, LogPrefixReject, MakeMark(Verdict{Rule: 12, Action: Reject}, false)},
		{"default drop at egress", app1, web1, portA, LogPrefixDrop, MakeMark(Verdict{Rule: defaultRule, Action: Drop}, false)},
		{"default drop at ingress", app1, web1, portB, LogPrefixDrop, MakeMark(Verdict{Rule: defaultRule, Action: Drop}, true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m := shopPolicy.expect(l.ident[tt.src], l.ident[tt.dst], ProtoTCP, tt.port); m != tt.mark {
				t.Fatalf("test case disagrees with the policy model: %v", m)
			}
			tt.src.ProbeTCP(netip.AddrPortFrom(tt.dst.IPv4, tt.port), 100*time.Millisecond)
			deadline := time.After(slowTimeout)
			for {
				select {
				case lg := <-got:
					if lg.prefix == tt.prefix && lg.mark == tt.mark {
						return
					}
					t.Logf("skipping log %q %v", lg.prefix, lg.mark)
				case <-deadline:
					t.Fatalf("no NFLOG message %q with mark %v", tt.prefix, tt.mark)
				}
			}
		})
	}
}

// echoOK sends a line over an established connection and reads it back.
func echoOK(c net.Conn) error {
	c.SetDeadline(time.Now().Add(slowTimeout))
	msg := []byte("still here\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err
}

// dialGreeted opens a connection to a probe server and consumes the greeting.
func dialGreeted(t *testing.T, src, dst *netlab.Workload, v6 bool, port uint16) net.Conn {
	t.Helper()
	c, err := src.Dial("tcp", netip.AddrPortFrom(dst.Addr(v6), port), slowTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(slowTimeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEstablishedSurvivesReapply: connections allowed by one revision keep
// working through a full replace and an incremental apply of revisions that
// would refuse them as new connections; their ct mark stays.
func TestEstablishedSurvivesReapply(t *testing.T) {
	l := newLab(t, 2, 3, Config{})
	l.apply(shopPolicy, 1, false)
	local := dialGreeted(t, l.w(1, 1), l.w(1, 2), false, portA)
	remote := dialGreeted(t, l.w(1, 1), l.w(2, 2), true, portA)
	markBefore, _ := flowMark(t, l.hosts[0], local)

	closed := policy{def: Verdict{Rule: defaultRule, Action: Drop}}
	for i, incremental := range []bool{false, true, false} {
		p := closed
		if i == 1 {
			p = policy{def: Verdict{Rule: defaultRule, Action: Reject}}
		}
		l.apply(p, uint64(2+i), incremental)
		for name, c := range map[string]net.Conn{"same host": local, "across hosts v6": remote} {
			if err := echoOK(c); err != nil {
				t.Errorf("after apply %d (incremental=%v): %s connection: %v", i, incremental, name, err)
			}
		}
		if o, _ := l.w(1, 1).ProbeTCP(netip.AddrPortFrom(l.w(1, 2).IPv4, portA), dropTimeout); o == netlab.Open {
			t.Errorf("after apply %d: a new connection got through", i)
		}
	}
	if m, ok := flowMark(t, l.hosts[0], local); !ok || m != markBefore {
		t.Errorf("ct mark %v after re-applies, was %v", m, markBefore)
	}
}

// TestAtomicFlip: while clients keep opening connections, flip between two
// revisions many times (full and incremental batches). Port C is allowed at
// egress by A and at ingress by B, and refused by each as a whole: only a
// packet that saw half of each could get through.
func TestAtomicFlip(t *testing.T) {
	l := newLab(t, 1, 2, Config{})
	webID, appID := l.ident[l.w(1, 1)], l.ident[l.w(1, 2)]
	src, dst := []Identity{webID}, []Identity{appID}
	rej := Verdict{Rule: defaultRule, Action: Reject} // quick denials: more attempts
	a := policy{def: rej, rules: []rule{
		{id: 30, src: src, dst: dst, proto: ProtoTCP, ports: Port(portA), action: Allow},
		{id: 31, src: src, dst: dst, proto: ProtoTCP, ports: Port(portC), action: Allow, dir: "out"},
	}}
	b := policy{def: rej, rules: []rule{
		{id: 40, src: src, dst: dst, proto: ProtoTCP, ports: Port(portB), action: Allow},
		{id: 41, src: src, dst: dst, proto: ProtoTCP, ports: Port(portC), action: Allow, dir: "in"},
	}}
	l.apply(a, 1, false)
	long := dialGreeted(t, l.w(1, 1), l.w(1, 2), false, portA)

	ctx, cancel := context.WithCancel(context.Background())
	var opened [3]atomic.Int64
	var tries atomic.Int64
	var wg sync.WaitGroup
	for i, port := range []uint16{portA, portB, portC} {
		for _, v6 := range []bool{false, true} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dstAddr := netip.AddrPortFrom(l.w(1, 2).Addr(v6), port)
				for ctx.Err() == nil {
					o, _ := l.w(1, 1).ProbeTCP(dstAddr, 200*time.Millisecond)
					tries.Add(1)
					if o == netlab.Open {
						opened[i].Add(1)
					}
				}
			}()
		}
	}
	const flips = 200
	tb := l.tables["h1"]
	for i := 0; i < flips; i++ {
		p := a
		if i%2 == 0 {
			p = b
		}
		st := l.state(l.hosts[0], p, uint64(2+i))
		var err error
		if i%4 < 2 {
			_, err = tb.ApplyIncremental(st)
		} else {
			_, err = tb.ApplyFull(st)
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	t.Logf("%d flips, %d connection attempts: port A opened %d, B %d, C %d", flips, tries.Load(), opened[0].Load(), opened[1].Load(), opened[2].Load())
	if opened[2].Load() != 0 {
		t.Errorf("port C, allowed by neither revision, opened %d times", opened[2].Load())
	}
	if opened[0].Load() == 0 || opened[1].Load() == 0 {
		t.Errorf("flipping never let A or B through: the test proves nothing")
	}
	if err := echoOK(long); err != nil {
		t.Errorf("established connection broke during the flips: %v", err)
	}
}

// TestIncrementalMembership: a workload changing group (its identity) is a
// handful of map elements, applied in one small batch.
func TestIncrementalMembership(t *testing.T) {
	l := newLab(t, 1, 3, Config{})
	web1, db1 := l.w(1, 1), l.w(1, 3)
	dbAddr := netip.AddrPortFrom(db1.IPv4, portA)
	l.apply(shopPolicy, 1, false)
	if o, _ := web1.ProbeTCP(dbAddr, dropTimeout); o != netlab.Timeout {
		t.Fatalf("web->db tcp/%d before: %v, want timeout", portA, o)
	}
	l.ident[db1] = app[0] // db1 joins the app groups
	st, err := l.tables["h1"].Apply(l.state(l.hosts[0], shopPolicy, 2))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("membership change: %s, +%d -%d elements, compile %v, kernel %v", st.Mode, st.Added, st.Deleted, st.Compile, st.Kernel)
	if st.Mode != ModeIncremental || st.FullFallback != nil {
		t.Errorf("mode %s (fallback %v), want incremental", st.Mode, st.FullFallback)
	}
	if o, err := web1.ProbeTCP(dbAddr, slowTimeout); o != netlab.Open {
		t.Errorf("web->db (now app) tcp/%d after: %v %v, want open", portA, o, err)
	}
	if s, err := l.tables["h1"].Verify(true); err != nil || len(s.Drift) > 0 || s.Revision != 2 {
		t.Errorf("verify after incremental: %+v %v", s, err)
	}
}

// TestVerifyAndRepair: Verify sees our table as applied, then notices
// someone deleting an element or the whole ruleset; Apply repairs.
func TestVerifyAndRepair(t *testing.T) {
	l := newLab(t, 1, 3, Config{})
	h := l.hosts[0]
	tb := l.tables["h1"]
	l.apply(shopPolicy, 7, false)
	s, err := tb.Verify(true)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Present || s.Revision != 7 || s.Version != 0 || len(s.Drift) != 0 || s.Counts[vname(SetWorkloads, 0)] != 3 || s.Counts[vname(SetWorkloads, 1)] != 3 {
		t.Fatalf("verify after apply: %+v", s)
	}
	t.Logf("counts: %v", s.Counts)
	ctx := context.Background()
	if _, err := h.NS.Exec(ctx, "nft", "delete", "element", "inet", DefaultTable, vname(SetWorkloads, 0), "{", `"`+l.w(1, 1).Interface+`"`, "}"); err != nil {
		t.Fatal(err)
	}
	s, err = tb.Verify(false)
	if err != nil || len(s.Drift) == 0 {
		t.Fatalf("verify missed a deleted element: %+v %v", s, err)
	}
	t.Logf("drift: %v", s.Drift)
	if _, err := h.NS.Exec(ctx, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	s, err = tb.Verify(false)
	if err != nil || s.Present || len(s.Drift) == 0 {
		t.Fatalf("verify missed a flushed ruleset: %+v %v", s, err)
	}
	st, err := tb.Apply(l.state(h, shopPolicy, 8))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != ModeFull || st.FullFallback == nil {
		t.Errorf("apply over a flushed ruleset: mode %s, fallback %v; want a full apply after a refused diff", st.Mode, st.FullFallback)
	}
	if s, err := tb.Verify(true); err != nil || len(s.Drift) != 0 || s.Revision != 8 {
		t.Errorf("verify after repair: %+v %v", s, err)
	}
}

// TestRemove: uninstalling leaves no table and no filtering.
func TestRemove(t *testing.T) {
	l := newLab(t, 1, 2, Config{})
	l.apply(policy{def: Verdict{Rule: defaultRule, Action: Drop}}, 1, false)
	w1, w2 := l.w(1, 1), l.w(1, 2)
	if o, _ := w1.ProbeTCP(netip.AddrPortFrom(w2.IPv4, portA), dropTimeout); o != netlab.Timeout {
		t.Fatalf("before remove: %v, want timeout", o)
	}
	tb := l.tables["h1"]
	if err := tb.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := tb.Remove(); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if o, err := w1.ProbeTCP(netip.AddrPortFrom(w2.IPv4, portA), slowTimeout); o != netlab.Open {
		t.Errorf("after remove: %v %v, want open", o, err)
	}
	s, err := tb.Verify(false)
	if err != nil || s.Present {
		t.Errorf("verify after remove: %+v %v", s, err)
	}
}

// TestListing shows the table nft prints for a small policy; it fails if
// nft can no longer print it.
func TestListing(t *testing.T) {
	l := newLab(t, 1, 2, Config{})
	l.apply(policy{def: Verdict{Rule: defaultRule, Action: Drop}, rules: shopPolicy.rules[:3]}, 42, false)
	out := l.nftList(l.hosts[0])
	for _, want := range []string{`comment "bulkhead revision 42"`, "ct mark set iifname . ct mark . meta l4proto . th dport map @egress_0 goto verdict", `"bhww1"`, "jump egress_0"} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q", want)
		}
	}
	t.Log("\n" + out)
	st := l.state(l.hosts[0], policy{def: Verdict{Rule: defaultRule, Action: Drop}, rules: shopPolicy.rules[:3]}, 42)
	d, err := Describe(st)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + d)
}

// TestKernelDifferential: random policies (any peers, port ranges, ICMP
// type/code, every action, one-direction rules, per-address and CIDR-range
// identities) and random probes: what real connections see must be what the
// policy model says, through full and incremental applies alike.
func TestKernelDifferential(t *testing.T) {
	l := newLab(t, 2, 3, Config{})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	seed := rng.Int63()
	rng = rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	perAddr := map[*netlab.Workload]Identity{}
	for w, id := range l.ident {
		perAddr[w] = id
	}
	pool := []Identity{101, 102, 103, 201, 202, 203, 501, 502}
	ws := l.topo.Workloads()
	for round := 0; round < 4; round++ {
		if round%2 == 1 {
			// Host blocks as CIDR ranges: every workload of a host shares
			// one identity.
			l.ranges = nil
			for _, h := range l.hosts {
				id := Identity(500 + h.Index)
				l.ranges = append(l.ranges,
					IdentityRange{Lo: netip.AddrFrom4([4]byte{10, byte(h.Index), 0, 0}), Hi: netip.AddrFrom4([4]byte{10, byte(h.Index), 0, 255}), Identity: id},
					IdentityRange{Lo: netip.MustParseAddr(fmt.Sprintf("fd00:b0:%x::", h.Index)), Hi: netip.MustParseAddr(fmt.Sprintf("fd00:b0:%x:0:ffff:ffff:ffff:ffff", h.Index)), Identity: id})
				for _, w := range h.Workloads() {
					l.ident[w] = id
				}
			}
		} else {
			l.ranges = nil
			for w, id := range perAddr {
				l.ident[w] = id
			}
		}
		p := randomPolicy(rng, pool)
		l.apply(p, uint64(round+1), round > 0)
		var probes []probe
		for i := 0; i < 60; i++ {
			pr := probe{src: ws[rng.Intn(len(ws))], dst: ws[rng.Intn(len(ws))], v6: rng.Intn(2) == 0}
			if pr.src == pr.dst {
				continue
			}
			switch rng.Intn(3) {
			case 0:
				pr.proto = ProtoTCP
			case 1:
				pr.proto = ProtoUDP
			default:
				pr.proto = ProtoICMP
				if pr.v6 {
					pr.proto = ProtoICMPv6
				}
			}
			pr.port = []uint16{portA, portB, portC}[rng.Intn(3)]
			probes = append(probes, pr)
		}
		before := t.Failed()
		l.checkAll(probes, l.expectOutcome(p))
		if t.Failed() && !before {
			t.Fatalf("round %d (seed %d) policy: %+v", round, seed, p)
		}
	}
}

func randomPolicy(rng *rand.Rand, pool []Identity) policy {
	pick := func() []Identity {
		if rng.Intn(3) == 0 {
			return nil // any
		}
		var out []Identity
		for _, id := range pool {
			if rng.Intn(3) == 0 {
				out = append(out, id)
			}
		}
		return out
	}
	actions := []Action{Allow, Allow, Drop, Reject}
	p := policy{def: Verdict{Rule: defaultRule, Action: actions[rng.Intn(len(actions))]}}
	for i, n := 0, 4+rng.Intn(10); i < n; i++ {
		r := rule{id: uint32(10 + i), src: pick(), dst: pick(), action: actions[rng.Intn(len(actions))],
			dir: []string{"", "", "in", "out"}[rng.Intn(4)], log: rng.Intn(2) == 0}
		switch rng.Intn(5) {
		case 0:
			r.proto, r.ports = ProtoTCP, []PortRange{Port(portA), Port(portB), Ports(portA, portB), Ports(portB, portC), AllPorts}[rng.Intn(5)]
		case 1:
			r.proto, r.ports = ProtoUDP, []PortRange{Port(portA), Port(portC), Ports(portA, portC), AllPorts}[rng.Intn(4)]
		case 2:
			r.proto, r.ports = ProtoICMP, []PortRange{ICMPType(8), ICMPTypeCode(8, 0), ICMPTypeCode(8, 1), ICMPType(13), AllPorts}[rng.Intn(5)]
		case 3:
			r.proto, r.ports = ProtoICMPv6, []PortRange{ICMPType(128), ICMPTypeCode(128, 1), AllPorts}[rng.Intn(3)]
		default:
			r.proto, r.ports = ProtoAny, AllPorts
		}
		p.rules = append(p.rules, r)
	}
	return p
}

func TestCheckKernel(t *testing.T) {
	needRoot(t)
	ns, err := netlab.NewNamespace(netlab.TestPrefix() + "-check")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	if err := CheckKernel(Config{NetNS: ns.Fd()}); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Exec(context.Background(), "nft", "list", "ruleset")
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("probe table left behind: %q %v", out, err)
	}
}
