package dpi

// BER-encoded protocols: LDAP (TCP, and CLDAP over UDP), SNMP, Kerberos.

// tlv reads one BER element with a definite length. st is more when the
// header is whole but the content is cut short (content is what there is).
func tlv(b []byte) (tag byte, content, rest []byte, st status) {
	if len(b) < 2 {
		return 0, nil, nil, more
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, no // high tag numbers: none of these protocols use them
	}
	n, hdr := int(b[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 3 {
			return 0, nil, nil, no // indefinite, or longer than 16 MiB
		}
		if len(b) < 2+k {
			return 0, nil, nil, more
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hdr += k
	}
	if len(b)-hdr < n {
		return tag, b[hdr:], nil, more
	}
	return tag, b[hdr : hdr+n], b[hdr+n:], yes
}

// berInt reads a small non-negative INTEGER element.
func berInt(b []byte) (int, []byte, status) {
	tag, c, rest, st := tlv(b)
	if st != yes {
		return 0, nil, st
	}
	if tag != 0x02 || len(c) < 1 || len(c) > 4 || c[0]&0x80 != 0 {
		return 0, nil, no
	}
	v := 0
	for _, x := range c {
		v = v<<8 | int(x)
	}
	return v, rest, yes
}

// ldapOps names LDAP protocolOp tags ([APPLICATION n]).
var ldapOps = [32]string{
	0: "bind", 1: "bind-response", 2: "unbind", 3: "search", 4: "search-entry",
	5: "search-done", 6: "modify", 7: "modify-response", 8: "add", 9: "add-response",
	10: "delete", 11: "delete-response", 12: "modify-dn", 13: "modify-dn-response",
	14: "compare", 15: "compare-response", 16: "abandon", 19: "search-reference",
	23: "extended", 24: "extended-response", 25: "intermediate",
}

// ldapMessage checks an LDAPMessage: SEQUENCE { messageID, protocolOp }.
func (f *Flow) ldapMessage(b []byte) status {
	if len(b) == 0 || b[0] != 0x30 {
		return no
	}
	_, c, _, st := tlv(b)
	if st == no {
		return no
	}
	if st == more && len(c) < 8 {
		return more
	}
	id, c, st2 := berInt(c)
	if st2 != yes || id > 1<<31-1 {
		return no
	}
	if len(c) < 2 {
		return more
	}
	op := c[0]
	num := op & 0x1f
	if op&0xc0 != 0x40 || ldapOps[num] == "" {
		return no
	}
	// unbind, delete and abandon are primitive, the others constructed.
	if primitive := num == 2 || num == 10 || num == 16; primitive != (op&0x20 == 0) {
		return no
	}
	_, body, _, st3 := tlv(c)
	if st3 == no {
		return no
	}
	if num == 0 {
		// BindRequest: version INTEGER (2 or 3), name OCTET STRING.
		v, r, st4 := berInt(body)
		if st4 == no || (st4 == yes && (v < 2 || v > 3)) {
			return no
		}
		if st4 == yes {
			if tag, name, _, st5 := tlv(r); st5 == yes && tag == 0x04 {
				setText(f.res.detail[:], &f.res.detailLen, name)
				return f.decide(AppLDAP, phaseDone)
			}
		}
	}
	if st == more {
		return more
	}
	setString(f.res.detail[:], &f.res.detailLen, ldapOps[num])
	return f.decide(AppLDAP, phaseDone)
}

func (f *Flow) ldap(dir Dir, b []byte) status { return f.ldapMessage(b) }

// cldap is connectionless LDAP (a UDP datagram is one whole message).
func (f *Flow) cldap(b []byte) status {
	if f.ldapMessage(b) == yes {
		return yes
	}
	f.res.detailLen = 0
	return no
}

// snmp recognises an SNMP message: SEQUENCE { version, community, PDU }
// (v1, v2c) or SEQUENCE { 3, header, ... }. The community is a secret and
// is not kept.
func (f *Flow) snmp(b []byte) status {
	tag, c, _, st := tlv(b)
	if st != yes || tag != 0x30 {
		return no
	}
	v, c, st := berInt(c)
	if st != yes {
		return no
	}
	var name string
	switch v {
	case 0, 1:
		t, _, r, st := tlv(c)
		if st != yes || t != 0x04 || len(r) < 2 || r[0] < 0xa0 || r[0] > 0xa8 {
			return no
		}
		if _, _, _, st := tlv(r); st != yes {
			return no
		}
		name = "v1"
		if v == 1 {
			name = "v2c"
		}
	case 3:
		t, hdr, _, st := tlv(c)
		if st != yes || t != 0x30 {
			return no
		}
		if _, _, st := berInt(hdr); st != yes { // msgID
			return no
		}
		name = "v3"
	default:
		return no
	}
	setString(f.res.detail[:], &f.res.detailLen, name)
	f.res.App = AppSNMP
	return yes
}

// Kerberos messages by their [APPLICATION n] tag.
var krbMessages = map[byte]struct {
	name    string
	msgType int
	request bool
}{
	0x6a: {"AS-REQ", 10, true},
	0x6b: {"AS-REP", 11, false},
	0x6c: {"TGS-REQ", 12, true},
	0x6d: {"TGS-REP", 13, false},
	0x7e: {"KRB-ERROR", 30, false},
}

// kerberos recognises a whole Kerberos message (one UDP datagram, or the
// record of a TCP one): KDC-REQ starts pvno [1] 5, msg-type [2]; replies
// and errors pvno [0] 5, msg-type [1].
func (f *Flow) kerberos(b []byte) status {
	if len(b) == 0 {
		return no
	}
	m, ok := krbMessages[b[0]]
	if !ok {
		return no
	}
	_, c, _, st := tlv(b)
	if st != yes {
		return st
	}
	t, seq, _, st := tlv(c)
	if st == no || t != 0x30 {
		return no
	}
	pvnoTag, typeTag := byte(0xa1), byte(0xa2)
	if !m.request {
		pvnoTag, typeTag = 0xa0, 0xa1
	}
	t, pv, seq, st := tlv(seq)
	if st != yes || t != pvnoTag {
		return no
	}
	if v, _, st := berInt(pv); st != yes || v != 5 {
		return no
	}
	t, mt, _, st := tlv(seq)
	if st != yes || t != typeTag {
		return no
	}
	if v, _, st := berInt(mt); st != yes || v != m.msgType {
		return no
	}
	setString(f.res.detail[:], &f.res.detailLen, m.name)
	f.res.App = AppKerberos
	return yes
}

// kerberosTCP is Kerberos over TCP: a 4-byte record length first (RFC 4120
// 7.2.2; the high bit is reserved).
func (f *Flow) kerberosTCP(dir Dir, b []byte) status {
	if len(b) < 6 {
		if len(b) > 0 && b[0] == 0 {
			return more
		}
		return no
	}
	n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if n < 20 || n > 1<<20 {
		return no
	}
	if _, ok := krbMessages[b[4]]; !ok {
		return no
	}
	if len(b)-4 < n {
		// Check the part there is; the whole message is needed to confirm.
		return more
	}
	if f.kerberos(b[4:4+n]) != yes {
		return no
	}
	f.phase = phaseDone
	return yes
}
