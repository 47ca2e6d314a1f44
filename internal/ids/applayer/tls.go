package applayer

import (
	encasn1 "encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// TLS: the hellos are read by internal/dpi (the same parser the firewall's
// DPI uses). The ClientHello gives a to_server Tx (tls.sni, ja3.hash); the
// server's flight a second, to_client Tx carrying the negotiated
// TLSVersion and everything known of the handshake (SNI and JA3 again, so
// a rule may combine them). For TLS 1.2 and older that Tx waits for the
// server's Certificate message and carries tls.cert_subject and
// tls.cert_issuer of the first certificate, written as Suricata does
// ("C=US, O=Let's Encrypt, CN=R3"); in TLS 1.3 the certificate is
// encrypted and those buffers are absent. Both Tx have ID 0: they are one
// transaction seen at two stages.

type tlsConn struct {
	hello, server bool
	version       uint16
	info          TLSInfo
	ja3           JA3Info
	ja3hex        [32]byte
	sni           []byte
	// The server's flight (TLS <= 1.2), read for its Certificate.
	srv     []byte
	hs      []byte
	subject []byte
	issuer  []byte
}

// maxServerFlight bounds what is read of the server's first flight.
const maxServerFlight = 64 << 10

func (c *Conn) tlsState() *tlsConn {
	if c.tls == nil {
		c.tls = &tlsConn{}
	}
	return c.tls
}

// update emits what the handshake read so far newly tells.
func (t *tlsConn) update(c *Conn, _ stream.Dir, emit func(*Tx)) {
	f := c.ident
	if f == nil || c.proto != rules.ProtoTLS {
		return
	}
	res := f.Result()
	if !t.hello && res.TLSOffered != 0 {
		t.hello = true
		t.info = TLSInfo{SNI: string(res.Host())}
		if res.JA3 != [16]byte{} {
			hex.Encode(t.ja3hex[:], res.JA3[:])
			t.ja3 = JA3Info{Hash: string(t.ja3hex[:]), String: string(f.JA3String())}
			t.info.JA3 = &t.ja3
		}
		// Each side's hello states its own version: the client's is the
		// highest it offered, the server's (below) the negotiated one.
		t.emit(c, stream.ToServer, res.Host(), res.TLSOffered, emit)
	}
	if f.Done() {
		t.sni = append(t.sni[:0], res.Host()...)
		t.version = res.TLSVersion
		c.release()
		if !t.hello || t.version == 0 {
			c.dead = true
			return
		}
		t.info.Version = VersionName(t.version)
		if t.version >= 0x0304 {
			// The rest is encrypted.
			t.serverTx(c, emit)
		}
		// Else the server's flight goes on with its Certificate, which
		// parse reads (the bytes that ended the ServerHello included).
	}
}

// serverTx emits the to_client Tx once and ends parsing.
func (t *tlsConn) serverTx(c *Conn, emit func(*Tx)) {
	if !t.server {
		t.server = true
		t.emit(c, stream.ToClient, t.sni, t.version, emit)
	}
	c.dead = true
}

// serverBytes reads the server's flight of a TLS <= 1.2 handshake from the
// start of the to_client stream, up to its Certificate message.
func (t *tlsConn) serverBytes(c *Conn, data []byte, emit func(*Tx)) {
	if len(t.srv)+len(data) > maxServerFlight {
		t.serverTx(c, emit)
		return
	}
	t.srv = append(t.srv, data...)
	if c.ident != nil {
		return // the ServerHello is still being read
	}
	for len(t.srv) >= 5 {
		n := int(binary.BigEndian.Uint16(t.srv[3:]))
		if len(t.srv) < 5+n {
			return
		}
		typ, frag := t.srv[0], t.srv[5:5+n]
		if typ != recordHandshake {
			// ChangeCipherSpec, an alert: no certificate in the clear.
			t.serverTx(c, emit)
			return
		}
		t.hs = append(t.hs, frag...)
		t.srv = t.srv[:copy(t.srv, t.srv[5+n:])]
		for len(t.hs) >= 4 {
			mlen := int(t.hs[1])<<16 | int(t.hs[2])<<8 | int(t.hs[3])
			if mlen > maxServerFlight {
				t.serverTx(c, emit)
				return
			}
			if len(t.hs) < 4+mlen {
				break
			}
			mtype, body := t.hs[0], t.hs[4:4+mlen]
			switch mtype {
			case hsCertificate:
				t.certificate(body)
				t.serverTx(c, emit)
				return
			case hsServerHelloDone:
				t.serverTx(c, emit)
				return
			}
			t.hs = t.hs[:copy(t.hs, t.hs[4+mlen:])]
		}
	}
}

const (
	recordHandshake   = 22
	hsCertificate     = 11
	hsServerHelloDone = 14
)

// certificate reads the first certificate's subject and issuer.
func (t *tlsConn) certificate(body []byte) {
	in := cryptobyte.String(body)
	var list, der cryptobyte.String
	if !in.ReadUint24LengthPrefixed(&list) || !list.ReadUint24LengthPrefixed(&der) {
		return
	}
	var cert, tbs, issuer, subject cryptobyte.String
	if !der.ReadASN1(&cert, asn1.SEQUENCE) || !cert.ReadASN1(&tbs, asn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(asn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.SkipASN1(asn1.INTEGER) || !tbs.SkipASN1(asn1.SEQUENCE) ||
		!tbs.ReadASN1(&issuer, asn1.SEQUENCE) || !tbs.SkipASN1(asn1.SEQUENCE) ||
		!tbs.ReadASN1(&subject, asn1.SEQUENCE) {
		return
	}
	t.subject = appendName(t.subject[:0], subject)
	t.issuer = appendName(t.issuer[:0], issuer)
	t.info.Subject, t.info.Issuer = string(t.subject), string(t.issuer)
}

// appendName writes an X.509 Name as "C=US, O=Org, CN=name": attributes in
// the certificate's order, short names for the usual types, the dotted OID
// for others.
func appendName(dst []byte, name cryptobyte.String) []byte {
	first := true
	for !name.Empty() {
		var rdn cryptobyte.String
		if !name.ReadASN1(&rdn, asn1.SET) {
			return dst
		}
		for !rdn.Empty() {
			var atv cryptobyte.String
			var oid encasn1.ObjectIdentifier
			var tag asn1.Tag
			var val cryptobyte.String
			if !rdn.ReadASN1(&atv, asn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&oid) || !atv.ReadAnyASN1(&val, &tag) {
				return dst
			}
			if !first {
				dst = append(dst, ',', ' ')
			}
			first = false
			if n, ok := attrNames[oid.String()]; ok {
				dst = append(dst, n...)
			} else {
				dst = append(dst, oid.String()...)
			}
			dst = append(dst, '=')
			if tag == asn1.Tag(30) { // BMPString: UTF-16BE
				for i := 0; i+1 < len(val); i += 2 {
					dst = utf8.AppendRune(dst, rune(val[i])<<8|rune(val[i+1]))
				}
				continue
			}
			dst = append(dst, val...)
		}
	}
	return dst
}

var attrNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "street",
	"2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.17": "postalCode",
	"2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title", "2.5.4.15": "businessCategory",
	"1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1": "UID",
}

func (t *tlsConn) emit(c *Conn, dir stream.Dir, sni []byte, version uint16, emit func(*Tx)) {
	tx := c.newTx(dir)
	tx.Proto = rules.ProtoTLS
	if len(sni) > 0 {
		tx.Buf[rules.BufTLSSNI] = sni
	}
	if dir == stream.ToClient && t.info.Subject != "" {
		tx.Buf[rules.BufTLSCertSubject] = t.subject
		tx.Buf[rules.BufTLSCertIssuer] = t.issuer
	}
	if t.info.JA3 != nil {
		tx.Buf[rules.BufJA3Hash] = t.ja3hex[:]
	}
	tx.TLSVersion = version
	tx.TLS = &t.info
	emit(tx)
}

// VersionName is a TLS wire version as Suricata's EVE writes it ("TLS
// 1.2"); "" for 0, "0x...." for an unknown one.
func VersionName(v uint16) string {
	switch v {
	case 0:
		return ""
	case 0x0200:
		return "SSLv2"
	case 0x0300:
		return "SSLv3"
	case 0x0301:
		return "TLSv1"
	case 0x0302:
		return "TLS 1.1"
	case 0x0303:
		return "TLS 1.2"
	case 0x0304:
		return "TLS 1.3"
	}
	var b [6]byte
	b[0], b[1] = '0', 'x'
	hex.Encode(b[2:], []byte{byte(v >> 8), byte(v)})
	return string(b[:])
}
