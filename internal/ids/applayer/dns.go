package applayer

import (
	"encoding/binary"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// DNS: every question of a query message (UDP datagram, or TCP record
// after its 2-byte length) gives a Tx with dns.query: the name dotted,
// without the trailing dot, labels as sent (the root is ""). Responses give
// none. Up to maxQuestions questions per message are read; compression
// pointers are followed (at most maxJumps).

const (
	maxQuestions = 16
	maxJumps     = 16
	maxDNSName   = 255
)

type dnsConn struct {
	buf  [2][]byte // a TCP record being read
	info DNSInfo
	name [maxDNSName]byte
	last textCache
}

func (c *Conn) dnsState() *dnsConn {
	if c.dns == nil {
		c.dns = &dnsConn{}
	}
	return c.dns
}

func (d *dnsConn) reset() {
	d.buf = [2][]byte{d.buf[0][:0], d.buf[1][:0]}
}

// stream reads DNS over TCP: records of a 2-byte length and a message.
func (d *dnsConn) stream(c *Conn, dir stream.Dir, data []byte, emit func(*Tx)) {
	for len(data) > 0 {
		if len(d.buf[dir]) == 0 && len(data) >= 2 {
			n := int(binary.BigEndian.Uint16(data))
			if len(data) >= 2+n {
				d.message(c, dir, data[2:2+n], emit)
				data = data[2+n:]
				continue
			}
		}
		b := append(d.buf[dir], data...)
		data = nil
		for len(b) >= 2 && len(b) >= 2+int(binary.BigEndian.Uint16(b)) {
			n := int(binary.BigEndian.Uint16(b))
			d.message(c, dir, b[2:2+n], emit)
			b = b[:copy(b, b[2+n:])]
		}
		d.buf[dir] = b
	}
}

// message reads one DNS message.
func (d *dnsConn) message(c *Conn, dir stream.Dir, m []byte, emit func(*Tx)) {
	if len(m) < 12 {
		return
	}
	id := binary.BigEndian.Uint16(m)
	flags := binary.BigEndian.Uint16(m[2:])
	if flags&0x8000 != 0 {
		return // a response
	}
	qd := int(binary.BigEndian.Uint16(m[4:]))
	p := 12
	for q := 0; q < min(qd, maxQuestions); q++ {
		name, next, ok := d.readName(m, p)
		if !ok || next+4 > len(m) {
			return
		}
		qtype := binary.BigEndian.Uint16(m[next:])
		p = next + 4
		tx := c.newTx(dir)
		tx.Proto = rules.ProtoDNS
		tx.ID = uint64(q)
		tx.Buf[rules.BufDNSQuery] = name
		d.info = DNSInfo{Type: "query", ID: id, RRName: d.last.get(name), RRType: TypeName(qtype)}
		tx.DNS = &d.info
		emit(tx)
	}
}

// readName reads the name at p into d.name; next is the offset after it
// in the message.
func (d *dnsConn) readName(m []byte, p int) (name []byte, next int, ok bool) {
	n := d.name[:0]
	next = -1
	for jumps := 0; ; {
		if p >= len(m) {
			return nil, 0, false
		}
		l := int(m[p])
		switch {
		case l == 0:
			if next < 0 {
				next = p + 1
			}
			return n, next, true
		case l&0xc0 == 0xc0:
			if p+1 >= len(m) || jumps == maxJumps {
				return nil, 0, false
			}
			if next < 0 {
				next = p + 2
			}
			p = int(binary.BigEndian.Uint16(m[p:]) & 0x3fff)
			jumps++
			continue
		case l > 63:
			return nil, 0, false
		}
		if p+1+l > len(m) || len(n)+l+1 > maxDNSName {
			return nil, 0, false
		}
		if len(n) > 0 {
			n = append(n, '.')
		}
		n = append(n, m[p+1:p+1+l]...)
		p += 1 + l
	}
}

var typeNames = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
	28: "AAAA", 33: "SRV", 35: "NAPTR", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
	64: "SVCB", 65: "HTTPS", 99: "SPF", 251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
}

// TypeName is a DNS RR type as EVE writes it ("AAAA"); unknown types are
// their number.
func TypeName(t uint16) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}
