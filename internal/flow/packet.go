package flow

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Packet is what a drop record needs from a packet's headers.
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8
	// Ports of TCP, UDP, UDP-Lite, SCTP and DCCP; 0 otherwise.
	SrcPort, DstPort   uint16
	ICMPType, ICMPCode uint8
	// Length is the IP total length the header claims, which may exceed
	// what was captured.
	Length uint16
	// Fragment is set for a non-first fragment, which carries no
	// transport header.
	Fragment bool
}

// Reasons a packet cannot be decoded. They are preallocated: decoding never
// allocates.
var (
	errTruncated  = errors.New("flow: packet truncated")
	errIPVersion  = errors.New("flow: not IPv4 or IPv6")
	errIPv4Header = errors.New("flow: bad IPv4 header length")
	errExtHeaders = errors.New("flow: too many IPv6 extension headers")
)

// maxExtHeaders bounds the IPv6 extension header walk; real packets have a
// handful.
const maxExtHeaders = 8

// IPv6 next-header values that are extension headers.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6AH       = 51
	ipv6DestOpts = 60
)

// Decode fills p from b, which starts at the IP header (NFLOG's payload). It
// does not allocate. On error p is partially filled and must not be used.
func (p *Packet) Decode(b []byte) error {
	*p = Packet{}
	if len(b) < 1 {
		return errTruncated
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return errTruncated
		}
		ihl := int(b[0]&0x0f) * 4
		p.Length = binary.BigEndian.Uint16(b[2:4])
		if ihl < 20 || int(p.Length) < ihl {
			return errIPv4Header
		}
		if len(b) < ihl {
			return errTruncated
		}
		p.Proto = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			p.Fragment = true
			return nil
		}
		end := min(len(b), int(p.Length))
		l4 = b[ihl:end]
	case 6:
		if len(b) < 40 {
			return errTruncated
		}
		p.Length = 40 + binary.BigEndian.Uint16(b[4:6])
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, off := b[6], 40
	walk:
		for i := 0; ; i++ {
			if i == maxExtHeaders {
				return errExtHeaders
			}
			var n int
			switch next {
			case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
				if len(b) < off+2 {
					return errTruncated
				}
				n = (int(b[off+1]) + 1) * 8
			case ipv6AH:
				if len(b) < off+2 {
					return errTruncated
				}
				n = (int(b[off+1]) + 2) * 4
			case ipv6Fragment:
				if len(b) < off+8 {
					return errTruncated
				}
				if binary.BigEndian.Uint16(b[off+2:off+4])>>3 != 0 {
					p.Proto = b[off]
					p.Fragment = true
					return nil
				}
				n = 8
			default:
				p.Proto = next
				if off > len(b) {
					return errTruncated
				}
				l4 = b[off:]
				break walk
			}
			next = b[off]
			off += n
		}
	default:
		return errIPVersion
	}
	switch p.Proto {
	case protoTCP, protoUDP, protoUDPLite, protoSCTP, protoDCCP:
		if len(l4) < 4 {
			return errTruncated
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case protoICMP, protoICMPv6:
		if len(l4) < 2 {
			return errTruncated
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
	}
	return nil
}
