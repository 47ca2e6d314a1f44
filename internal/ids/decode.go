package ids

import (
	"encoding/binary"
	"net/netip"
)

// packet is one decoded IP packet; payload aliases the packet.
type packet struct {
	src, dst   netip.Addr
	sport      uint16
	dport      uint16
	proto      uint8
	ipLen      int
	fragment   bool // an IP fragment: no transport header is read
	seq        uint32
	tcpFlags   uint8
	icmpType   uint8
	icmpCode   uint8
	payload    []byte
	hasPorts   bool
	transportK bool // the transport header was decoded
}

// decode reads an IPv4 or IPv6 packet from its IP header. It allocates
// nothing; false means the packet is not one it can read.
func decode(b []byte, p *packet) bool {
	*p = packet{}
	if len(b) < 1 {
		return false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || len(b) < ihl {
			return false
		}
		if total > len(b) {
			total = len(b) // a truncated capture: read what is there
		}
		p.ipLen = int(binary.BigEndian.Uint16(b[2:4]))
		p.src = netip.AddrFrom4([4]byte(b[12:16]))
		p.dst = netip.AddrFrom4([4]byte(b[16:20]))
		p.proto = b[9]
		frag := binary.BigEndian.Uint16(b[6:8])
		if frag&0x2000 != 0 || frag&0x1fff != 0 {
			p.fragment = true
			return true
		}
		l4 = b[ihl:total]
	case 6:
		if len(b) < 40 {
			return false
		}
		p.ipLen = int(binary.BigEndian.Uint16(b[4:6])) + 40
		end := min(p.ipLen, len(b))
		p.src = netip.AddrFrom16([16]byte(b[8:24]))
		p.dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, off := b[6], 40
		for hops := 0; ; hops++ {
			if hops > 8 {
				return false
			}
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if off+2 > end {
					return false
				}
				n := (int(b[off+1]) + 1) * 8
				next, off = b[off], off+n
				continue
			case 51: // AH
				if off+2 > end {
					return false
				}
				n := (int(b[off+1]) + 2) * 4
				next, off = b[off], off+n
				continue
			case 44: // fragment
				if off+8 > end {
					return false
				}
				fo := binary.BigEndian.Uint16(b[off+2 : off+4])
				p.proto = b[off]
				if fo&0xfff8 != 0 || fo&1 != 0 {
					p.fragment = true
					return true
				}
				next, off = b[off], off+8
				continue
			}
			break
		}
		if off > end {
			return false
		}
		p.proto = next
		l4 = b[off:end]
	default:
		return false
	}
	switch p.proto {
	case protoTCP:
		if len(l4) < 20 {
			return false
		}
		doff := int(l4[12]>>4) * 4
		if doff < 20 || doff > len(l4) {
			return false
		}
		p.sport = binary.BigEndian.Uint16(l4[0:2])
		p.dport = binary.BigEndian.Uint16(l4[2:4])
		p.seq = binary.BigEndian.Uint32(l4[4:8])
		p.tcpFlags = l4[13]
		p.payload = l4[doff:]
		p.hasPorts = true
	case protoUDP:
		if len(l4) < 8 {
			return false
		}
		p.sport = binary.BigEndian.Uint16(l4[0:2])
		p.dport = binary.BigEndian.Uint16(l4[2:4])
		n := int(binary.BigEndian.Uint16(l4[4:6]))
		if n < 8 {
			return false
		}
		p.payload = l4[8:min(n, len(l4))]
		p.hasPorts = true
	case protoICMP, protoICMPv6:
		if len(l4) < 8 {
			return false
		}
		p.icmpType, p.icmpCode = l4[0], l4[1]
		p.payload = l4[8:]
	default:
		p.payload = l4
	}
	p.transportK = true
	return true
}
