package nft

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/netlab"
)

// dialFrom connects from w's namespace to dst with the source port bound
// to sport, and waits for the probe server's greeting.
func dialFrom(w *netlab.Workload, sport uint16, dst netip.AddrPort, timeout time.Duration) (netlab.Outcome, error) {
	var c net.Conn
	err := w.NS.Do(func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: w.Addr(dst.Addr().Is6()).AsSlice(), Port: int(sport)}}
		var err error
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return netlab.Classify(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return netlab.Classify(err)
	}
	return netlab.Open, nil
}

// TestSessionsKernel: two users on one RDSH workload (h1/w1), one address,
// each with a source port range of its own session; at the HR server's
// ingress (h2/w1) only alice's ports are the peer that may reach port A,
// while the address-wide rule for port B holds for every port. A session
// change applies (in full, as the session rules live in the ingress
// chain), and removing alice's session takes her access away.
func TestSessionsKernel(t *testing.T) {
	l := newLab(t, 2, 1, Config{})
	rdsh, hr := l.w(1, 1), l.w(2, 1)
	const (
		rdshID  Identity = 101
		aliceID Identity = 500
		bobID   Identity = 501
	)
	allow := Verdict{Rule: defaultRule, Action: Allow}
	drop := Verdict{Rule: defaultRule, Action: Drop}
	h1 := &HostState{Revision: 1, EgressDefault: allow, IngressDefault: allow,
		Workloads: []Workload{{Name: rdsh.Name, Interface: rdsh.Interface}}}
	if _, err := l.tables["h1"].ApplyFull(h1); err != nil {
		t.Fatal(err)
	}
	hrState := func(rev uint64, sessions []SessionRange) *HostState {
		return &HostState{
			Revision:       rev,
			Identities:     []IdentityRange{{Lo: rdsh.IPv4, Hi: rdsh.IPv4, Identity: rdshID}, {Lo: rdsh.IPv6, Hi: rdsh.IPv6, Identity: rdshID}},
			Sessions:       sessions,
			EgressDefault:  allow,
			IngressDefault: drop,
			Workloads: []Workload{{Name: hr.Name, Interface: hr.Interface, Ingress: []Entry{
				{Peer: aliceID, Proto: ProtoTCP, Ports: Port(portA), Verdict: Verdict{Rule: 10, Action: Allow}},
				{Peer: rdshID, Proto: ProtoTCP, Ports: Port(portB), Verdict: Verdict{Rule: 11, Action: Allow}},
				{Peer: aliceID, Proto: ProtoTCP, Ports: Port(portB), Verdict: Verdict{Rule: 11, Action: Allow}},
				{Peer: bobID, Proto: ProtoTCP, Ports: Port(portB), Verdict: Verdict{Rule: 11, Action: Allow}},
			}}},
		}
	}
	both := []SessionRange{
		{Addr: rdsh.IPv4, Ports: Ports(20000, 20999), Identity: aliceID},
		{Addr: rdsh.IPv4, Ports: Ports(21000, 21999), Identity: bobID},
		{Addr: rdsh.IPv6, Ports: Ports(20000, 20999), Identity: aliceID},
	}
	tb := l.tables["h2"]
	if _, err := tb.ApplyFull(hrState(1, nil)); err != nil {
		t.Fatal(err)
	}
	st, err := tb.Apply(hrState(2, both))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != ModeFull {
		t.Errorf("apply with new sessions: mode %s, want full", st.Mode)
	}
	if _, err := tb.ApplyIncremental(hrState(3, both[1:])); err == nil {
		t.Error("incremental apply of changed sessions: no error")
	}
	a, b := netip.AddrPortFrom(hr.IPv4, portA), netip.AddrPortFrom(hr.IPv4, portB)
	a6 := netip.AddrPortFrom(hr.IPv6, portA)
	for _, tc := range []struct {
		who   string
		sport uint16
		dst   netip.AddrPort
		want  netlab.Outcome
	}{
		{"alice", 20001, a, netlab.Open},
		{"alice", 20999, a, netlab.Open},
		{"bob", 21001, a, netlab.Timeout},
		{"nobody", 30001, a, netlab.Timeout},
		{"alice", 20002, b, netlab.Open},
		{"bob", 21002, b, netlab.Open},
		{"nobody", 30002, b, netlab.Open},
		{"alice over IPv6", 20005, a6, netlab.Open},
		{"bob over IPv6", 21005, a6, netlab.Timeout},
	} {
		timeout := slowTimeout
		if tc.want != netlab.Open {
			timeout = dropTimeout
		}
		if o, err := dialFrom(rdsh, tc.sport, tc.dst, timeout); o != tc.want {
			t.Errorf("%s from port %d to %v: %v (%v), want %v", tc.who, tc.sport, tc.dst, o, err, tc.want)
		}
	}
	if v, err := tb.Verify(false); err != nil || len(v.Drift) != 0 {
		t.Errorf("verify with sessions: %+v, %v", v, err)
	}
	// Alice logs off: her ports are the address's again.
	if _, err := tb.Apply(hrState(4, both[1:])); err != nil {
		t.Fatal(err)
	}
	if o, err := dialFrom(rdsh, 20003, a, dropTimeout); o != netlab.Timeout {
		t.Errorf("alice after logoff to %v: %v (%v), want timeout", a, o, err)
	}
	if o, err := dialFrom(rdsh, 20004, b, slowTimeout); o != netlab.Open {
		t.Errorf("alice's old port to %v: %v (%v), want open (address-wide rule)", b, o, err)
	}
}

// TestSessionValidation: overlapping, empty or reserved session ranges
// are refused with what is wrong.
func TestSessionValidation(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.1")
	base := func(ss ...SessionRange) *HostState {
		v := Verdict{Rule: 1, Action: Drop}
		return &HostState{EgressDefault: v, IngressDefault: v, Sessions: ss}
	}
	for _, tc := range []struct {
		ss   []SessionRange
		want string
	}{
		{[]SessionRange{{Addr: a, Ports: Ports(10, 20), Identity: 1}, {Addr: a, Ports: Ports(20, 30), Identity: 2}}, "overlap"},
		{[]SessionRange{{Addr: a, Ports: PortRange{20, 10}, Identity: 1}}, "empty range"},
		{[]SessionRange{{Addr: a, Ports: Ports(1, 2), Identity: AnyPeer}}, "reserved"},
		{[]SessionRange{{Ports: Ports(1, 2), Identity: 1}}, "want a plain"},
		{[]SessionRange{{Addr: netip.MustParseAddr("::ffff:10.0.0.1"), Ports: Ports(1, 2), Identity: 1}}, "want a plain"},
	} {
		err := base(tc.ss...).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.ss, err, tc.want)
		}
	}
	ok := base(SessionRange{Addr: a, Ports: Ports(10, 20), Identity: 1}, SessionRange{Addr: a, Ports: Ports(21, 30), Identity: 2},
		SessionRange{Addr: netip.MustParseAddr("fd00::1"), Ports: Ports(10, 20), Identity: 3})
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

// TestDeciderSessions: the queue reader's walk gives a connection from a
// session's source ports the session's identity at ingress, as the
// ingress chain does; at egress, or without a source port, the address's.
func TestDeciderSessions(t *testing.T) {
	rdsh := netip.MustParseAddr("10.0.1.10")
	allowA := Verdict{Rule: 10, Action: Allow}
	drop := Verdict{Rule: 1, Action: Drop}
	st := &HostState{
		Identities:     []IdentityRange{{Lo: rdsh, Hi: rdsh, Identity: 7}},
		Sessions:       []SessionRange{{Addr: rdsh, Ports: Ports(20000, 20999), Identity: 8}},
		EgressDefault:  drop,
		IngressDefault: drop,
		Workloads: []Workload{{Name: "hr", Interface: "bhwhr", Ingress: []Entry{{Peer: 8, Proto: ProtoTCP, Ports: Port(443), Verdict: allowA}},
			Egress: []Entry{{Peer: 8, Proto: ProtoTCP, Ports: Port(443), Verdict: allowA}}}},
	}
	d, err := NewDecider(st)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := d.Workload("bhwhr")
	for _, tc := range []struct {
		c       Conn
		ingress bool
		want    Verdict
	}{
		{Conn{Peer: rdsh, Proto: ProtoTCP, Port: 443, SrcPort: 20500}, true, allowA},
		{Conn{Peer: netip.MustParseAddr("::ffff:10.0.1.10"), Proto: ProtoTCP, Port: 443, SrcPort: 20000}, true, allowA},
		{Conn{Peer: rdsh, Proto: ProtoTCP, Port: 443, SrcPort: 21000}, true, drop},
		{Conn{Peer: rdsh, Proto: ProtoTCP, Port: 443}, true, drop},
		{Conn{Peer: rdsh, Proto: ProtoSCTP, Port: 443, SrcPort: 20500}, true, drop},
		{Conn{Peer: rdsh, Proto: ProtoTCP, Port: 443, SrcPort: 20500}, false, drop},
	} {
		if got := d.Point(w, tc.ingress, tc.c, nil); got != MakeMark(tc.want, tc.ingress) {
			t.Errorf("%+v ingress=%v: %v, want %v", tc.c, tc.ingress, got, MakeMark(tc.want, tc.ingress))
		}
	}
}
