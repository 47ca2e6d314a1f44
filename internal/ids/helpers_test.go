package ids

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// anyRule is a rule header "action proto any any -> any any" with the
// given matches; tests set what else they need.
func anyRule(sid uint32, action rules.Action, proto rules.Proto, ms ...rules.Match) *rules.Rule {
	return &rules.Rule{
		Action: action, Proto: proto, GID: 1, SID: sid, Rev: 1, Msg: "test rule",
		Src: &rules.AddrSet{Any: true}, Dst: &rules.AddrSet{Any: true},
		SrcPorts: &rules.PortSet{Any: true}, DstPorts: &rules.PortSet{Any: true},
		Priority: 2, Classtype: "web-application-attack",
		Matches: ms,
	}
}

func content(s string) rules.Match {
	return rules.Match{Kind: rules.MatchContent, Pattern: []byte(s)}
}

// compileOne compiles rules and fails on any problem.
func compileOne(t testing.TB, rs ...*rules.Rule) *Engine {
	t.Helper()
	e, probs := Compile(rs)
	for _, p := range probs {
		t.Fatalf("compile: sid %d: %s", p.SID, p.Reason)
	}
	return e
}

var (
	clientAddr = netip.MustParseAddr("10.0.1.10")
	serverAddr = netip.MustParseAddr("10.0.2.20")
	t0         = time.Date(2026, 11, 24, 1, 0, 0, 0, time.UTC)
)

// conn builds the packets of one TCP connection, encoded with gopacket.
type conn struct {
	t            testing.TB
	c, s         netip.AddrPort
	cseq, sseq   uint32 // initial sequence numbers
	cnext, snext uint32
}

func newConn(t testing.TB, cport, sport uint16) *conn {
	return &conn{t: t, c: netip.AddrPortFrom(clientAddr, cport), s: netip.AddrPortFrom(serverAddr, sport), cseq: 1000, sseq: 50000}
}

// handshake returns SYN, SYN-ACK, ACK.
func (k *conn) handshake() [][]byte {
	k.cnext, k.snext = k.cseq+1, k.sseq+1
	return [][]byte{
		tcpPacket(k.t, k.c, k.s, k.cseq, 0, layers.TCP{SYN: true}, nil),
		tcpPacket(k.t, k.s, k.c, k.sseq, k.cseq+1, layers.TCP{SYN: true, ACK: true}, nil),
		tcpPacket(k.t, k.c, k.s, k.cnext, k.snext, layers.TCP{ACK: true}, nil),
	}
}

// toServer is a client data segment at the client's stream offset off
// (0-based after the SYN); the sequence does not advance by itself.
func (k *conn) toServer(off int, data []byte) []byte {
	return tcpPacket(k.t, k.c, k.s, k.cseq+1+uint32(off), k.snext, layers.TCP{ACK: true, PSH: true}, data)
}

func (k *conn) toClient(off int, data []byte) []byte {
	return tcpPacket(k.t, k.s, k.c, k.sseq+1+uint32(off), k.cnext, layers.TCP{ACK: true, PSH: true}, data)
}

func tcpPacket(t testing.TB, src, dst netip.AddrPort, seq, ack uint32, flags layers.TCP, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	tcp := flags
	tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack, tcp.Window = layers.TCPPort(src.Port()), layers.TCPPort(dst.Port()), seq, ack, 65535
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, &tcp, gopacket.Payload(payload))
}

func udpPacket(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, udp, gopacket.Payload(payload))
}

func icmpPacket(t testing.TB, src, dst netip.Addr, typ, code uint8, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: 7, Seq: 1}
	return serialize(t, ip, icmp, gopacket.Payload(payload))
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// run feeds packets and collects alerts; it returns the verdicts too.
func run(t testing.TB, e *Engine, inline bool, pkts ...[]byte) ([]*Alert, []Verdict) {
	t.Helper()
	var got []*Alert
	insp := NewInspector(InspectorConfig{OnAlert: func(a *Alert) { got = append(got, a) }})
	var vs []Verdict
	for n, p := range pkts {
		vs = append(vs, insp.Packet(t0.Add(time.Duration(n)*time.Millisecond), p, e, inline))
	}
	insp.CloseAll(t0.Add(time.Hour), e)
	return got, vs
}

func sids(as []*Alert) []uint32 {
	var out []uint32
	for _, a := range as {
		out = append(out, a.Rule.SID)
	}
	return out
}

// netip4 replaces an endpoint's address.
func netip4(ap netip.AddrPort, addr string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), ap.Port())
}
