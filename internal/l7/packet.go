package l7

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// packet is what the reader needs of one queued IP packet. payload
// aliases the packet's bytes.
type packet struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16 // ICMP: dport is type<<8|code, sport 0
	tcp          bool
	seq          uint32
	syn, fin     bool
	payload      []byte
}

var errMalformed = errors.New("malformed packet")

// IPv6 extension headers parsePacket walks past.
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6DestOpts = 60
)

// parsePacket reads an IPv4 or IPv6 packet as the kernel queues it
// (reassembled by conntrack). It never panics on short or hostile input.
func parsePacket(b []byte, p *packet) error {
	if len(b) < 1 {
		return errMalformed
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return errMalformed
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if ihl < 20 || total < ihl || total > len(b) {
			return errMalformed
		}
		p.src = netip.AddrFrom4([4]byte(b[12:16]))
		p.dst = netip.AddrFrom4([4]byte(b[16:20]))
		p.proto = b[9]
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return errMalformed // a non-first fragment: conntrack reassembles, so never here
		}
		l4 = b[ihl:total]
	case 6:
		if len(b) < 40 {
			return errMalformed
		}
		plen := int(binary.BigEndian.Uint16(b[4:]))
		if 40+plen > len(b) {
			return errMalformed
		}
		p.src = netip.AddrFrom16([16]byte(b[8:24]))
		p.dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, rest := b[6], b[40:40+plen]
		for range 8 {
			if next != ip6HopByHop && next != ip6Routing && next != ip6DestOpts && next != ip6Fragment {
				break
			}
			if len(rest) < 8 {
				return errMalformed
			}
			n := 8
			if next != ip6Fragment {
				n = (int(rest[1]) + 1) * 8
			} else if binary.BigEndian.Uint16(rest[2:])&0xfff8 != 0 {
				return errMalformed
			}
			if len(rest) < n {
				return errMalformed
			}
			next, rest = rest[0], rest[n:]
		}
		p.proto, l4 = next, rest
	default:
		return errMalformed
	}
	p.tcp, p.syn, p.fin, p.seq, p.sport, p.dport = false, false, false, 0, 0, 0
	switch p.proto {
	case 6:
		if len(l4) < 20 {
			return errMalformed
		}
		doff := int(l4[12]>>4) * 4
		if doff < 20 || doff > len(l4) {
			return errMalformed
		}
		p.tcp = true
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.seq = binary.BigEndian.Uint32(l4[4:])
		p.syn, p.fin = l4[13]&0x02 != 0, l4[13]&0x01 != 0
		p.payload = l4[doff:]
	case 17, 136: // UDP, UDP-Lite
		if len(l4) < 8 {
			return errMalformed
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.payload = l4[8:]
	case 33, 132: // DCCP, SCTP: ports, and no payload the classifier reads
		if len(l4) < 4 {
			return errMalformed
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.payload = nil
	case 1, 58: // ICMP, ICMPv6: type and code where the kernel keys them
		if len(l4) < 2 {
			return errMalformed
		}
		p.dport = binary.BigEndian.Uint16(l4)
		p.payload = nil
	default:
		p.payload = nil
	}
	return nil
}
