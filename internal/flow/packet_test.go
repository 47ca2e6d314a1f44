package flow

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// ipv4 builds an IPv4 packet around an L4 header.
func ipv4(proto uint8, src, dst string, fragOff uint16, l4 []byte) []byte {
	b := make([]byte, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:], fragOff&0x1fff)
	b[8], b[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], l4)
	return b
}

// ipv6 builds an IPv6 packet; ext is a chain of (next header, body) pairs
// placed before the L4 header.
func ipv6(proto uint8, src, dst string, ext [][]byte, l4 []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	next := &b[6]
	for _, e := range ext {
		*next = e[0]
		off := len(b)
		b = append(b, e[1:]...)
		next = &b[off]
	}
	*next = proto
	b = append(b, l4...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

func ports(src, dst uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], src)
	binary.BigEndian.PutUint16(b[2:], dst)
	return b
}

// extHdr is an 8-byte extension header of type t (first byte of the body
// is the next header, filled in by ipv6).
func extHdr(t uint8) []byte { return []byte{t, 0, 0, 0, 0, 0, 0, 0, 0} }

func TestDecode(t *testing.T) {
	fragment := []byte{ipv6Fragment, 0, 0, 0x00, 0x10, 0, 0, 0, 1} // offset 2 (x8 bytes)
	firstFragment := []byte{ipv6Fragment, 0, 0, 0x00, 0x01, 0, 0, 0, 1}
	tests := []struct {
		name string
		pkt  []byte
		want Packet
		err  error
	}{
		{"ipv4 tcp", ipv4(6, "10.0.0.1", "10.0.0.2", 0, ports(40000, 443)),
			Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 6, SrcPort: 40000, DstPort: 443, Length: 40}, nil},
		{"ipv4 udp", ipv4(17, "10.0.0.1", "10.0.0.2", 0, ports(5353, 53)[:8]),
			Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 17, SrcPort: 5353, DstPort: 53, Length: 28}, nil},
		{"ipv4 icmp", ipv4(1, "10.0.0.1", "10.0.0.2", 0, []byte{8, 0, 0, 0, 0, 1, 0, 1}),
			Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 1, ICMPType: 8, Length: 28}, nil},
		{"ipv4 fragment", ipv4(6, "10.0.0.1", "10.0.0.2", 100, nil),
			Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 6, Length: 20, Fragment: true}, nil},
		{"ipv4 other proto", ipv4(47, "10.0.0.1", "10.0.0.2", 0, []byte{1, 2}),
			Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 47, Length: 22}, nil},
		{"ipv6 tcp", ipv6(6, "fd00::1", "fd00::2", nil, ports(40000, 22)),
			Packet{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Proto: 6, SrcPort: 40000, DstPort: 22, Length: 60}, nil},
		{"ipv6 icmpv6", ipv6(58, "fd00::1", "fd00::2", nil, []byte{128, 0, 0, 0}),
			Packet{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Proto: 58, ICMPType: 128, Length: 44}, nil},
		{"ipv6 hop-by-hop and dest opts", ipv6(17, "fd00::1", "fd00::2", [][]byte{extHdr(ipv6HopByHop), extHdr(ipv6DestOpts)}, ports(1, 53)[:8]),
			Packet{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Proto: 17, SrcPort: 1, DstPort: 53, Length: 64}, nil},
		{"ipv6 first fragment", ipv6(6, "fd00::1", "fd00::2", [][]byte{firstFragment}, ports(2, 80)),
			Packet{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Proto: 6, SrcPort: 2, DstPort: 80, Length: 68}, nil},
		{"ipv6 later fragment", ipv6(6, "fd00::1", "fd00::2", [][]byte{fragment}, []byte{1, 2, 3, 4}),
			Packet{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Proto: 6, Length: 52, Fragment: true}, nil},
		{"empty", nil, Packet{}, errTruncated},
		{"ipv5", []byte{0x50, 0, 0, 0}, Packet{}, errIPVersion},
		{"ipv4 short", ipv4(6, "10.0.0.1", "10.0.0.2", 0, nil)[:19], Packet{}, errTruncated},
		{"ipv4 ihl 4", func() []byte { b := ipv4(6, "10.0.0.1", "10.0.0.2", 0, ports(1, 2)); b[0] = 0x44; return b }(), Packet{}, errIPv4Header},
		{"ipv4 ihl beyond capture", func() []byte { b := ipv4(6, "10.0.0.1", "10.0.0.2", 0, nil); b[0] = 0x4f; b[3] = 60; return b }(), Packet{}, errTruncated},
		{"ipv4 tcp truncated", ipv4(6, "10.0.0.1", "10.0.0.2", 0, []byte{1, 2, 3}), Packet{}, errTruncated},
		{"ipv6 short", append([]byte{0x60}, make([]byte, 38)...), Packet{}, errTruncated},
		{"ipv6 truncated ext", ipv6(6, "fd00::1", "fd00::2", [][]byte{extHdr(ipv6HopByHop)}, nil)[:41], Packet{}, errTruncated},
		{"ipv6 ext loop", ipv6(6, "fd00::1", "fd00::2", [][]byte{extHdr(0), extHdr(0), extHdr(0), extHdr(0), extHdr(0), extHdr(0), extHdr(0), extHdr(0), extHdr(0)}, ports(1, 2)), Packet{}, errExtHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := p.Decode(tt.pkt)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && p != tt.want {
				t.Errorf("got  %+v\nwant %+v", p, tt.want)
			}
		})
	}
}

func TestDecodeAndAggregateAllocateNothing(t *testing.T) {
	buf := NewBuffer(16)
	d, err := NewDropReader(DropReaderConfig{Host: "h", Group: 1, DecodeMark: testMark}, buf)
	if err != nil {
		t.Fatal(err)
	}
	pkts := [][]byte{
		ipv4(6, "10.0.0.1", "10.0.0.2", 0, ports(40000, 443)),
		ipv6(17, "fd00::1", "fd00::2", [][]byte{extHdr(ipv6HopByHop)}, ports(1, 53)[:8]),
		ipv4(1, "10.0.0.1", "10.0.0.2", 0, []byte{8, 0, 0, 0}),
	}
	now := time.Now()
	for _, p := range pkts {
		d.Handle(p, 0x0200_0007, now) // first sight of each key may allocate
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, p := range pkts {
			d.Handle(p, 0x0200_0007, now)
		}
	})
	if allocs != 0 {
		t.Errorf("Handle allocates %.1f times per run, want 0", allocs)
	}
	if s := d.Stats(); s.Packets != 3+3*1001 || s.Malformed != 0 {
		t.Errorf("stats %+v, want 3006 packets (AllocsPerRun runs once more)", s)
	}
}

func BenchmarkHandle(b *testing.B) {
	d, _ := NewDropReader(DropReaderConfig{Host: "h", Group: 1, DecodeMark: testMark}, NewBuffer(16))
	pkt := ipv6(6, "fd00::1", "fd00::2", [][]byte{extHdr(ipv6HopByHop)}, ports(40000, 443))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		d.Handle(pkt, 0x0200_0007, now)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic,
// and what it accepts must be self-consistent.
func FuzzDecode(f *testing.F) {
	f.Add(ipv4(6, "10.0.0.1", "10.0.0.2", 0, ports(40000, 443)))
	f.Add(ipv4(1, "10.0.0.1", "10.0.0.2", 0, []byte{3, 3, 0, 0}))
	f.Add(ipv6(17, "fd00::1", "fd00::2", [][]byte{extHdr(ipv6HopByHop), extHdr(ipv6Routing)}, ports(1, 53)[:8]))
	f.Add(ipv6(6, "fd00::1", "fd00::2", [][]byte{{ipv6Fragment, 0, 0, 0x00, 0x10, 0, 0, 0, 1}}, nil))
	f.Add([]byte{0x4f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := p.Decode(b); err != nil {
			return
		}
		switch b[0] >> 4 {
		case 4:
			if !p.Src.Is4() || !p.Dst.Is4() {
				t.Fatalf("IPv4 packet decoded to %v -> %v", p.Src, p.Dst)
			}
		case 6:
			if !p.Src.Is6() || !p.Dst.Is6() {
				t.Fatalf("IPv6 packet decoded to %v -> %v", p.Src, p.Dst)
			}
		default:
			t.Fatalf("accepted IP version %d", b[0]>>4)
		}
		if p.Fragment && (p.SrcPort != 0 || p.DstPort != 0) {
			t.Fatalf("fragment with ports %+v", p)
		}
	})
}
