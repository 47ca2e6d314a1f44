package dpi

import "encoding/binary"

// Binary protocols recognised by their first message's header: PostgreSQL,
// SMB, RDP, DNS, MongoDB, MySQL, NTP.

const (
	pgSSLRequest  = 80877103
	pgGSSRequest  = 80877104
	pgCancel      = 80877102
	pgProtocol3   = 3 << 16
	pgMaxStartup  = 10000
	mongoOpMsg    = 2013
	mongoOpQuery  = 2004
	mongoOpComp   = 2012
	mongoOpReply  = 1
	mongoMaxMsg   = 48 << 20
	mysqlProtocol = 10
)

// postgres recognises a PostgreSQL StartupMessage, SSLRequest,
// GSSENCRequest or CancelRequest.
func (f *Flow) postgres(dir Dir, b []byte) status {
	if dir != Client || len(b) == 0 || b[0] != 0 {
		return no
	}
	if len(b) < 8 {
		return more
	}
	n := int(binary.BigEndian.Uint32(b))
	code := binary.BigEndian.Uint32(b[4:])
	switch {
	case (code == pgSSLRequest || code == pgGSSRequest) && n == 8 && len(b) == 8,
		code == pgCancel && n == 16 && len(b) == 16:
		name := "ssl-request"
		if code == pgGSSRequest {
			name = "gss-request"
		} else if code == pgCancel {
			name = "cancel"
		}
		setString(f.res.detail[:], &f.res.detailLen, name)
		return f.decide(AppPostgres, phaseDone)
	case code>>16 != 3 || code&0xffff > 2 || n < 9 || n > pgMaxStartup:
		return no
	}
	if len(b) < n {
		return more
	}
	// Parameters: pairs of NUL-terminated names and values, then a NUL.
	p := b[8:n]
	if p[len(p)-1] != 0 {
		return no
	}
	var user []byte
	for len(p) > 1 {
		k, v, rest, ok := cstrings(p)
		if !ok || len(k) == 0 {
			return no
		}
		for _, c := range k {
			if c < '!' || c > '~' {
				return no
			}
		}
		if string(k) == "user" {
			user = v
		}
		p = rest
	}
	if len(p) != 1 {
		return no
	}
	setText(f.res.detail[:], &f.res.detailLen, user)
	return f.decide(AppPostgres, phaseDone)
}

// cstrings splits two NUL-terminated strings off p.
func cstrings(p []byte) (a, b, rest []byte, ok bool) {
	i := indexNUL(p)
	if i < 0 {
		return nil, nil, nil, false
	}
	a, p = p[:i], p[i+1:]
	j := indexNUL(p)
	if j < 0 {
		return nil, nil, nil, false
	}
	return a, p[:j], p[j+1:], true
}

func indexNUL(p []byte) int {
	for i, c := range p {
		if c == 0 {
			return i
		}
	}
	return -1
}

// smb recognises SMB over TCP 445: a NetBIOS session message (type 0, a
// 24-bit length) holding an SMB1, SMB2 or SMB3-transform header.
func (f *Flow) smb(dir Dir, b []byte) status {
	if len(b) == 0 || b[0] != 0 {
		return no
	}
	if len(b) < 8 {
		return more
	}
	n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if n < 32 || n > 1<<24-1 || b[5] != 'S' || b[6] != 'M' || b[7] != 'B' {
		return no
	}
	var name string
	switch b[4] {
	case 0xff:
		name = "SMB1"
	case 0xfe:
		name = "SMB2"
		if len(b) >= 8+4 && binary.LittleEndian.Uint16(b[8:]) != 64 { // StructureSize
			return no
		}
	case 0xfd:
		name = "SMB3-encrypted"
	default:
		return no
	}
	setString(f.res.detail[:], &f.res.detailLen, name)
	return f.decide(AppSMB, phaseDone)
}

// rdp recognises RDP's first PDU: a TPKT header and an X.224 Connection
// Request (or Confirm) carrying nothing, a cookie or an RDP negotiation
// request/response, which tells it from other ISO transport users.
func (f *Flow) rdp(dir Dir, b []byte) status {
	if len(b) == 0 || b[0] != 3 {
		return no
	}
	if len(b) < 11 {
		return more
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if b[1] != 0 || n < 11 || n > 4096 || int(b[4]) != n-5 {
		return no
	}
	code := b[5]
	if (code != 0xe0 && code != 0xd0) || b[10] != 0 {
		return no
	}
	if len(b) < n {
		return more
	}
	v := b[11:n]
	const cookie = "Cookie: mstshash="
	switch {
	case len(v) == 0:
	case len(v) >= 8 && v[0] >= 1 && v[0] <= 3 && v[2] == 8 && v[3] == 0 && len(v) == 8:
	case len(v) > len("Cookie: ") && string(v[:len("Cookie: ")]) == "Cookie: ":
		if len(v) > len(cookie) && string(v[:len(cookie)]) == cookie {
			user, _ := line(v[len(cookie):], len(v))
			setText(f.res.detail[:], &f.res.detailLen, user)
		}
	default:
		return no
	}
	return f.decide(AppRDP, phaseDone)
}

// dnsTCP is DNS over TCP: a 2-byte length, then a message.
func (f *Flow) dnsTCP(dir Dir, b []byte) status {
	if len(b) < 2 {
		return more
	}
	n := int(binary.BigEndian.Uint16(b))
	if n < 17 {
		return no
	}
	if len(b)-2 < n {
		if f.dnsHeader(b[2:], true) == no {
			return no
		}
		return more
	}
	if f.dns(b[2:2+n], true) != yes {
		return no
	}
	f.phase = phaseDone
	return yes
}

// dnsHeader checks a DNS header and question; partial allows the message
// to be cut after the question.
func (f *Flow) dnsHeader(b []byte, partial bool) status {
	short := no // what running out of bytes means
	if partial {
		short = more
	}
	if len(b) < 12+5 {
		return short
	}
	flags := binary.BigEndian.Uint16(b[2:])
	qd, an, ns, ar := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:]), binary.BigEndian.Uint16(b[10:])
	response := flags&0x8000 != 0
	opcode := flags >> 11 & 0xf
	if flags&0x0040 != 0 || qd != 1 || (opcode != 0 && opcode != 4 && opcode != 5) {
		return no
	}
	if !response && opcode == 0 && (an != 0 || ns != 0 || ar > 2 || flags&0xf != 0) {
		return no
	}
	if response && (an > 512 || ns > 512 || ar > 512 || flags&0xf > 10) {
		return no
	}
	// The question: labels of printable characters, then type and class.
	p := 12
	var name [253]byte
	nl := 0
	for {
		if p >= len(b) {
			return short
		}
		l := int(b[p])
		p++
		if l == 0 {
			break
		}
		if l > 63 || nl+l+1 > len(name)+1 {
			return no
		}
		if p+l > len(b) {
			return short
		}
		if nl > 0 {
			name[nl] = '.'
			nl++
		}
		for _, c := range b[p : p+l] {
			if c <= ' ' || c > '~' {
				return no
			}
		}
		nl += copy(name[nl:], b[p:p+l])
		p += l
	}
	if p+4 > len(b) {
		return short
	}
	qtype, qclass := binary.BigEndian.Uint16(b[p:]), binary.BigEndian.Uint16(b[p+2:])&0x7fff
	if qtype == 0 || (qclass != 1 && qclass != 3 && qclass != 4 && qclass != 254 && qclass != 255) {
		return no
	}
	p += 4
	if !partial && !response && an == 0 && ns == 0 && ar == 0 && p != len(b) {
		return no
	}
	if !partial && ar > 0 && len(b)-p < 11 {
		return no
	}
	setText(f.res.host[:], &f.res.hostLen, name[:nl])
	return yes
}

// dns recognises one whole DNS message (a UDP datagram, or a TCP record).
func (f *Flow) dns(b []byte, tcp bool) status {
	if f.dnsHeader(b, false) != yes {
		f.res.hostLen = 0
		return no
	}
	f.res.App = AppDNS
	return yes
}

// mongo recognises a MongoDB wire message: a 16-byte header (little
// endian length, request id, response-to, opcode) and an OP_MSG, OP_QUERY
// or OP_COMPRESSED body.
func (f *Flow) mongo(dir Dir, b []byte) status {
	if len(b) < 16 {
		if len(b) >= 4 && b[3] != 0 {
			return no
		}
		return more
	}
	n := int(binary.LittleEndian.Uint32(b))
	resp := binary.LittleEndian.Uint32(b[8:])
	op := binary.LittleEndian.Uint32(b[12:])
	if n < 21 || n > mongoMaxMsg {
		return no
	}
	body := b[16:min(n, len(b))]
	var doc []byte
	switch {
	case op == mongoOpMsg:
		if len(body) < 5 {
			return more
		}
		flags := binary.LittleEndian.Uint32(body)
		if flags&^0x10003 != 0 || body[4] > 1 {
			return no
		}
		if body[4] == 0 {
			doc = body[5:]
		}
	case op == mongoOpQuery && resp == 0:
		if len(body) < 4 {
			return more
		}
		if binary.LittleEndian.Uint32(body)&^0xfe != 0 {
			return no
		}
		coll := body[4:]
		i := indexNUL(coll)
		if i < 0 {
			if len(b) < n && len(coll) < 256 {
				return more
			}
			return no
		}
		dot := false
		for _, c := range coll[:i] {
			if c < '!' || c > '~' {
				return no
			}
			dot = dot || c == '.'
		}
		if !dot || len(coll) < i+1+8 {
			return no
		}
		doc = coll[i+1+8:]
	case op == mongoOpComp:
		if len(body) < 9 || body[8] > 3 {
			return no
		}
	default:
		return no
	}
	if doc != nil {
		if len(doc) < 5 {
			if len(b) < n {
				return more
			}
			return no
		}
		dl := int(binary.LittleEndian.Uint32(doc))
		if dl < 5 || dl > n-16 {
			return no
		}
		// The first element's name is the command ("hello", "find").
		if doc[4] != 0 {
			if i := indexNUL(doc[5:]); i > 0 {
				setText(f.res.detail[:], &f.res.detailLen, doc[5:5+i])
			}
		}
	}
	return f.decide(AppMongoDB, phaseDone)
}

// mysql recognises a MySQL/MariaDB server greeting (protocol 10, a
// NUL-terminated version, the thread id, the first scramble, a NUL) or a
// server's first error packet.
func (f *Flow) mysql(dir Dir, b []byte) status {
	if dir != Server {
		return no
	}
	if len(b) < 5 {
		return more
	}
	n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	if b[3] != 0 || n < 5 || n > 1024 {
		return no
	}
	if len(b) < 4+n {
		return more
	}
	p := b[4 : 4+n]
	if p[0] == 0xff {
		// ERR: code, then (4.1+) '#' and a SQL state, then the message.
		code := binary.LittleEndian.Uint16(p[1:])
		if code < 1000 || code > 5000 {
			return no
		}
		for _, c := range p[3:] {
			if c < ' ' || c > '~' {
				return no
			}
		}
		setString(f.res.detail[:], &f.res.detailLen, "error")
		return f.decide(AppMySQL, phaseDone)
	}
	if p[0] != mysqlProtocol {
		return no
	}
	v := p[1:]
	i := indexNUL(v)
	if i < 1 || i > 64 || len(v) < i+1+4+8+1 || v[i+1+4+8] != 0 {
		return no
	}
	for _, c := range v[:i] {
		if c < ' ' || c > '~' {
			return no
		}
	}
	setText(f.res.detail[:], &f.res.detailLen, v[:i])
	return f.decide(AppMySQL, phaseDone)
}

// ntp recognises an NTP packet: 48 bytes (plus a MAC or extension
// fields), version 1-4, mode 1-5, a sane stratum, poll and precision.
func (f *Flow) ntp(b []byte) status {
	switch n := len(b); {
	case n == 48, n == 52, n == 68, n == 72:
	case n > 48 && n <= 1024 && (n-48)%4 == 0:
		// Extension fields: type, length (>= 16, a multiple of 4).
		if l := int(binary.BigEndian.Uint16(b[50:])); l < 16 || l%4 != 0 || 48+l > n {
			return no
		}
	default:
		return no
	}
	vn, mode := b[0]>>3&7, b[0]&7
	if vn < 1 || vn > 4 || mode < 1 || mode > 5 || b[1] > 16 || b[2] > 17 {
		return no
	}
	if p := int8(b[3]); p > 0 || p < -32 {
		return no
	}
	name := "client"
	switch mode {
	case 1, 2:
		name = "symmetric"
	case 4:
		name = "server"
	case 5:
		name = "broadcast"
	}
	d := f.res.detail[:0]
	d = append(d, 'v', '0'+vn, ' ')
	d = append(d, name...)
	f.res.detailLen = uint8(len(d))
	f.res.App = AppNTP
	return yes
}
