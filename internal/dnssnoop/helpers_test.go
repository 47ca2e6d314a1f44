package dnssnoop

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// rec is a record for a test response.
type rec struct {
	name  string
	typ   uint16
	ttl   uint32
	addr  string // A, AAAA
	cname string
	txt   string
}

func a(name string, ttl uint32, addr string) rec {
	return rec{name: name, typ: TypeA, ttl: ttl, addr: addr}
}
func aaaa(name string, ttl uint32, addr string) rec {
	return rec{name: name, typ: TypeAAAA, ttl: ttl, addr: addr}
}
func cname(name string, ttl uint32, target string) rec {
	return rec{name: name, typ: TypeCNAME, ttl: ttl, cname: target}
}
func txt(name string, ttl uint32, s string) rec {
	return rec{name: name, typ: 16, ttl: ttl, txt: s}
}

func mustName(t testing.TB, s string) dnsmessage.Name {
	t.Helper()
	n, err := dnsmessage.NewName(s)
	if err != nil {
		t.Fatalf("name %q: %v", s, err)
	}
	return n
}

// response builds a real, compressed DNS response with the x/net builder.
func response(t testing.TB, rcode dnsmessage.RCode, q string, recs ...rec) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, Response: true, Authoritative: true, RCode: rcode})
	b.EnableCompression()
	check := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	check(b.StartQuestions())
	check(b.Question(dnsmessage.Question{Name: mustName(t, q), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	check(b.StartAnswers())
	for _, r := range recs {
		h := dnsmessage.ResourceHeader{Name: mustName(t, r.name), Class: dnsmessage.ClassINET, TTL: r.ttl}
		switch r.typ {
		case TypeA:
			check(b.AResource(h, dnsmessage.AResource{A: netip.MustParseAddr(r.addr).As4()}))
		case TypeAAAA:
			check(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(r.addr).As16()}))
		case TypeCNAME:
			check(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: mustName(t, r.cname)}))
		default:
			check(b.TXTResource(h, dnsmessage.TXTResource{TXT: []string{r.txt}}))
		}
	}
	msg, err := b.Finish()
	check(err)
	return msg
}

// checksum is the Internet checksum over b, folded.
func checksum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ipPacket wraps an L4 segment in an IPv4 or IPv6 header with correct
// lengths and checksums.
func ipPacket(src, dst netip.Addr, proto byte, l4 []byte) []byte {
	var pseudo []byte
	pseudo = append(pseudo, src.AsSlice()...)
	pseudo = append(pseudo, dst.AsSlice()...)
	pseudo = append(pseudo, 0, proto)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(l4)))
	csumOff := 16 // TCP
	if proto == 17 {
		csumOff = 6
	}
	binary.BigEndian.PutUint16(l4[csumOff:], 0)
	binary.BigEndian.PutUint16(l4[csumOff:], fold(checksum(checksum(0, pseudo), l4)))
	if src.Is4() {
		h := make([]byte, 20)
		h[0], h[8], h[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		copy(h[12:], src.AsSlice())
		copy(h[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(h[10:], fold(checksum(0, h)))
		return append(h, l4...)
	}
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, proto, 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	return append(h, l4...)
}

func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	l4 := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(l4, src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	return ipPacket(src.Addr(), dst.Addr(), 17, append(l4, payload...))
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func tcpPacket(src, dst netip.AddrPort, seq uint32, flags byte, payload []byte) []byte {
	l4 := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(l4, src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint32(l4[4:], seq)
	l4[12], l4[13] = 5<<4, flags
	binary.BigEndian.PutUint16(l4[14:], 65535)
	return ipPacket(src.Addr(), dst.Addr(), 6, append(l4, payload...))
}

// tcpMessage is a DNS message with its 2-byte length, as on a TCP stream.
func tcpMessage(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}
