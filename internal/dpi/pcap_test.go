package dpi

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// pkt is one packet of a synthetic conversation.
type pkt struct {
	v6             bool
	src, dst       string
	sport, dport   uint16
	udp            bool
	seq, ack       uint32
	syn, ackf, fin bool
	payload        string
}

// ipPacket encodes p as an IP packet with gopacket's serializers.
func ipPacket(t *testing.T, p pkt) ([]byte, layers.EthernetType) {
	t.Helper()
	var l3 gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	et := layers.EthernetTypeIPv4
	proto := layers.IPProtocolTCP
	if p.udp {
		proto = layers.IPProtocolUDP
	}
	if p.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.ParseIP(p.src), DstIP: net.ParseIP(p.dst)}
		l3, nl, et = ip, ip, layers.EthernetTypeIPv6
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(p.src).To4(), DstIP: net.ParseIP(p.dst).To4()}
		l3, nl = ip, ip
	}
	var l4 gopacket.SerializableLayer
	if p.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		u.SetNetworkLayerForChecksum(nl)
		l4 = u
	} else {
		tc := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), Seq: p.seq, Ack: p.ack,
			SYN: p.syn, ACK: p.ackf, FIN: p.fin, Window: 65535}
		tc.SetNetworkLayerForChecksum(nl)
		l4 = tc
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, l3, l4, gopacket.Payload(p.payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), et
}

// conversation: an HTTP request in two segments that arrive out of order
// with a retransmission, then a DNS query over IPv6 UDP.
func conversation() []pkt {
	c, s := "10.0.0.1", "10.0.0.2"
	req := "GET /x HTTP/1.1\r\nHost: a.lab.test\r\n\r\n"
	return []pkt{
		{src: c, dst: s, sport: 40000, dport: 8000, seq: 100, syn: true},
		{src: s, dst: c, sport: 8000, dport: 40000, seq: 900, ack: 101, syn: true, ackf: true},
		{src: c, dst: s, sport: 40000, dport: 8000, seq: 101, ack: 901, ackf: true},
		{src: c, dst: s, sport: 40000, dport: 8000, seq: 101 + 10, ack: 901, ackf: true, payload: req[10:]},
		{src: c, dst: s, sport: 40000, dport: 8000, seq: 101, ack: 901, ackf: true, payload: req[:10]},
		{src: c, dst: s, sport: 40000, dport: 8000, seq: 101, ack: 901, ackf: true, payload: req[:10]},
		{src: s, dst: c, sport: 8000, dport: 40000, seq: 901, ack: 101 + uint32(len(req)), ackf: true, payload: "HTTP/1.1 200 OK\r\n\r\n"},
		{v6: true, udp: true, src: "fd00::1", dst: "fd00::53", sport: 5353, dport: 53,
			payload: string(dnsQuery("www.lab.test"))},
	}
}

func dnsQuery(name string) []byte {
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

func TestReadCaptureLinkTypes(t *testing.T) {
	frame := map[string]func(ip []byte, et layers.EthernetType) []byte{
		"ethernet": func(ip []byte, et layers.EthernetType) []byte {
			h := make([]byte, 14)
			copy(h, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
			binary.BigEndian.PutUint16(h[12:], uint16(et))
			return append(h, ip...)
		},
		"raw": func(ip []byte, _ layers.EthernetType) []byte { return ip },
		"sll": func(ip []byte, et layers.EthernetType) []byte {
			h := make([]byte, 16) // packet type, ARPHRD_ETHER, address length, address, protocol
			binary.BigEndian.PutUint16(h[2:], 1)
			binary.BigEndian.PutUint16(h[4:], 6)
			binary.BigEndian.PutUint16(h[14:], uint16(et))
			return append(h, ip...)
		},
	}
	links := map[string]layers.LinkType{"ethernet": layers.LinkTypeEthernet, "raw": layers.LinkTypeRaw, "sll": layers.LinkTypeLinuxSLL}
	for name, mk := range frame {
		for _, ng := range []bool{false, true} {
			var buf bytes.Buffer
			var w interface {
				WritePacket(gopacket.CaptureInfo, []byte) error
			}
			if ng {
				nw, err := pcapgo.NewNgWriter(&buf, links[name])
				if err != nil {
					t.Fatal(err)
				}
				w = nw
			} else {
				pw := pcapgo.NewWriter(&buf)
				if err := pw.WriteFileHeader(65535, links[name]); err != nil {
					t.Fatal(err)
				}
				w = pw
			}
			ts := time.Unix(1700000000, 0)
			for i, p := range conversation() {
				ip, et := ipPacket(t, p)
				data := mk(ip, et)
				ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data)}
				if err := w.WritePacket(ci, data); err != nil {
					t.Fatal(err)
				}
			}
			if nw, ok := w.(*pcapgo.NgWriter); ok {
				nw.Flush()
			}
			c, err := ReadCapture(&buf)
			if err != nil {
				t.Fatalf("%s ng=%v: %v", name, ng, err)
			}
			if c.Packets != 8 || c.Skipped != 0 || len(c.Flows) != 2 {
				t.Fatalf("%s ng=%v: %d packets, %d skipped, %d flows", name, ng, c.Packets, c.Skipped, len(c.Flows))
			}
			h, d := c.Flows[0], c.Flows[1]
			if h.Result.App != AppHTTP || string(h.Result.Host()) != "a.lab.test" || h.Client.String() != "10.0.0.1:40000" || h.Packets != 7 {
				t.Errorf("%s ng=%v: http flow %v %q client %v packets %d", name, ng, h.Result.App, h.Result.Host(), h.Client, h.Packets)
			}
			if d.Result.App != AppDNS || string(d.Result.Host()) != "www.lab.test" || d.Server.String() != "[fd00::53]:53" || d.Proto != UDP {
				t.Errorf("%s ng=%v: dns flow %v %q %v", name, ng, d.Result.App, d.Result.Host(), d.Server)
			}
		}
	}
}

func TestReadCaptureErrors(t *testing.T) {
	for _, c := range []struct {
		name, data, want string
	}{
		{"text", "this is not a capture\n", "not a pcap or pcapng capture"},
		{"empty", "", "file too short"},
		{"pcap header cut", "\xd4\xc3\xb2\xa1\x02\x00", "pcap"},
	} {
		_, err := ReadCapture(strings.NewReader(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// A capture cut inside a packet: the packets before it are read.
	var buf bytes.Buffer
	pw := pcapgo.NewWriter(&buf)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	for _, p := range conversation()[:3] {
		ip, _ := ipPacket(t, p)
		pw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(ip), Length: len(ip)}, ip)
	}
	c, err := ReadCapture(bytes.NewReader(buf.Bytes()[:buf.Len()-10]))
	if err != nil || !c.Truncated || c.Packets != 2 {
		t.Errorf("truncated capture: %v, %+v", err, c)
	}
}
