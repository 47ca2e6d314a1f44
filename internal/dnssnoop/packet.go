package dnssnoop

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Packet errors.
var (
	ErrPacket   = errors.New("dnssnoop: packet headers truncated or invalid")
	ErrFragment = errors.New("dnssnoop: IP fragment (not reassembled)")
	ErrNotDNS   = errors.New("dnssnoop: not UDP or TCP from port 53")
)

// segment is one DNS packet's addressing and transport payload.
type segment struct {
	src, dst      netip.Addr
	sport, dport  uint16
	tcp           bool
	seq           uint32
	syn, fin, rst bool
	payload       []byte
}

// decode reads an IPv4 or IPv6 packet (as NFLOG hands it over, from the
// network header) carrying UDP or TCP from port 53.
func (s *segment) decode(pkt []byte) error {
	if len(pkt) < 1 {
		return ErrPacket
	}
	var proto byte
	var l4 []byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return ErrPacket
		}
		ihl := int(pkt[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		if ihl < 20 || total < ihl || len(pkt) < ihl {
			return ErrPacket
		}
		if frag := binary.BigEndian.Uint16(pkt[6:]); frag&0x3fff != 0 {
			return ErrFragment
		}
		if total < len(pkt) {
			pkt = pkt[:total] // Ethernet padding
		}
		s.src = netip.AddrFrom4([4]byte(pkt[12:16]))
		s.dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		proto, l4 = pkt[9], pkt[ihl:]
	case 6:
		if len(pkt) < 40 {
			return ErrPacket
		}
		if plen := int(binary.BigEndian.Uint16(pkt[4:])); plen > 0 && 40+plen < len(pkt) {
			pkt = pkt[:40+plen]
		}
		s.src = netip.AddrFrom16([16]byte(pkt[8:24]))
		s.dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		proto, l4 = pkt[6], pkt[40:]
		// Extension headers: hop-by-hop, routing, destination options.
		for range 8 {
			if proto != 0 && proto != 43 && proto != 60 {
				break
			}
			if len(l4) < 8 {
				return ErrPacket
			}
			n := (int(l4[1]) + 1) * 8
			if len(l4) < n {
				return ErrPacket
			}
			proto, l4 = l4[0], l4[n:]
		}
		if proto == 44 {
			return ErrFragment
		}
	default:
		return ErrPacket
	}
	switch proto {
	case 17:
		if len(l4) < 8 {
			return ErrPacket
		}
		s.tcp = false
		s.sport = binary.BigEndian.Uint16(l4)
		s.dport = binary.BigEndian.Uint16(l4[2:])
		ulen := int(binary.BigEndian.Uint16(l4[4:]))
		if ulen < 8 || ulen > len(l4) {
			return ErrPacket
		}
		s.payload = l4[8:ulen]
	case 6:
		if len(l4) < 20 {
			return ErrPacket
		}
		off := int(l4[12]>>4) * 4
		if off < 20 || off > len(l4) {
			return ErrPacket
		}
		s.tcp = true
		s.sport = binary.BigEndian.Uint16(l4)
		s.dport = binary.BigEndian.Uint16(l4[2:])
		s.seq = binary.BigEndian.Uint32(l4[4:])
		flags := l4[13]
		s.fin, s.syn, s.rst = flags&0x01 != 0, flags&0x02 != 0, flags&0x04 != 0
		s.payload = l4[off:]
	default:
		return ErrNotDNS
	}
	if s.sport != 53 {
		return ErrNotDNS
	}
	return nil
}
