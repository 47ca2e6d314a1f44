package applayer

import (
	"crypto/md5"
	encasn1 "encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// TLS: the hellos are read by internal/dpi (the same parser the firewall's
// DPI uses). The ClientHello gives a to_server Tx (tls.sni, ja3.hash,
// ja3.string); the server's flight a second, to_client Tx carrying the
// negotiated TLSVersion, ja3s.hash (read here from the ServerHello) and
// everything known of the handshake (SNI and JA3 again, so a rule may
// combine them). For TLS 1.2 and older that Tx waits for the server's
// Certificate message and carries, of the first (the server's)
// certificate, tls.cert_subject and tls.cert_issuer written as Suricata
// does ("C=US, O=Let's Encrypt, CN=R3"), tls.cert_serial ("0A:E1:E6:...")
// and its DER bytes as tls.certs; in TLS 1.3 the certificate is encrypted
// and those buffers are absent.
//
// tls.certs is a multi-buffer (Suricata inspects each certificate of the
// chain on its own): every further certificate of the chain gives one more
// to_client Tx, after the server's, carrying only tls.certs (that
// certificate's DER) and the EVE "tls" object, marked Tx.Continues, with
// TLSVersion 0 so that tls.version rules do not match it again. A rule
// that does not look at tls.certs cannot match those Tx; a rule combining
// tls.certs with another TLS buffer sees the first certificate only. All
// these Tx have ID 0: they are one transaction seen at several stages.

type tlsConn struct {
	hello, server bool
	version       uint16
	info          TLSInfo
	ja3           JA3Info
	ja3hex        [32]byte
	ja3str        []byte
	sni           []byte
	// The server's flight, read for its ServerHello (JA3S) and, up to TLS
	// 1.2, its Certificate.
	srv     []byte
	hs      []byte
	subject []byte
	issuer  []byte
	serial  []byte
	ja3s    JA3Info
	ja3sHex [32]byte
	ja3sStr []byte
	// certs is the Certificate message's list while serverTx runs (a
	// view into hs); nil otherwise.
	certs []byte
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
			t.ja3str = append(t.ja3str[:0], f.JA3String()...)
			t.ja3 = JA3Info{Hash: string(t.ja3hex[:]), String: string(t.ja3str)}
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
		// parse reads the server's flight (the bytes that ended the
		// ServerHello included): its ServerHello for JA3S, then, up to
		// TLS 1.2, its Certificate; in TLS 1.3 the rest is encrypted.
	}
}

// serverTx emits the to_client Tx once, then one per further certificate
// of t.certs, and ends parsing.
func (t *tlsConn) serverTx(c *Conn, emit func(*Tx)) {
	if !t.server {
		t.server = true
		t.emit(c, stream.ToClient, t.sni, t.version, emit)
		list := cryptobyte.String(t.certs)
		var der cryptobyte.String
		for first := true; list.ReadUint24LengthPrefixed(&der); first = false {
			if first || len(der) == 0 {
				continue // the first went with the server's Tx
			}
			tx := c.newTx(stream.ToClient)
			tx.Proto = rules.ProtoTLS
			tx.Buf[rules.BufTLSCerts] = der
			tx.TLS = &t.info
			tx.Continues = true
			emit(tx)
		}
	}
	t.certs = nil
	c.dead = true
}

// serverBytes reads the server's flight from the start of the to_client
// stream: the ServerHello, and up to TLS 1.2 the messages up to the
// Certificate.
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
		if typ == recordChangeCipherSpec && t.version >= 0x0304 {
			// TLS 1.3's compatibility ChangeCipherSpec (after a
			// HelloRetryRequest): the ServerHello is still to come.
			t.srv = t.srv[:copy(t.srv, t.srv[5+n:])]
			continue
		}
		if typ != recordHandshake {
			// ChangeCipherSpec (a resumed session), an alert,
			// encrypted data: no certificate in the clear.
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
			case hsServerHello:
				if t.serverHello(body) && t.version >= 0x0304 {
					// The rest is encrypted.
					t.serverTx(c, emit)
					return
				}
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
	recordChangeCipherSpec = 20
	recordHandshake        = 22
	hsServerHello          = 2
	hsCertificate          = 11
	hsServerHelloDone      = 14
)

// serverHello computes the JA3S fingerprint of a ServerHello body:
// md5 of "version,cipher,extensions" (the legacy version and the cipher
// in decimal, the extension types in decimal joined by '-', GREASE
// values left out). It says false for a HelloRetryRequest or a body it
// cannot read.
func (t *tlsConn) serverHello(body []byte) bool {
	in := cryptobyte.String(body)
	var version, cipher uint16
	var random, sid, exts cryptobyte.String
	var comp uint8
	if !in.ReadUint16(&version) || !in.ReadBytes((*[]byte)(&random), 32) ||
		!in.ReadUint8LengthPrefixed(&sid) || !in.ReadUint16(&cipher) || !in.ReadUint8(&comp) {
		return false
	}
	if string(random) == helloRetryRandom {
		return false
	}
	if !in.Empty() && !in.ReadUint16LengthPrefixed(&exts) {
		return false
	}
	s := strconv.AppendUint(t.ja3sStr[:0], uint64(version), 10)
	s = append(s, ',')
	s = strconv.AppendUint(s, uint64(cipher), 10)
	s = append(s, ',')
	sep := false
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return false
		}
		if typ&0x0f0f == 0x0a0a && typ>>8 == typ&0xff {
			continue // GREASE
		}
		if sep {
			s = append(s, '-')
		}
		sep = true
		s = strconv.AppendUint(s, uint64(typ), 10)
	}
	t.ja3sStr = s
	sum := md5.Sum(s)
	hex.Encode(t.ja3sHex[:], sum[:])
	t.ja3s = JA3Info{Hash: string(t.ja3sHex[:]), String: string(s)}
	t.info.JA3S = &t.ja3s
	return true
}

// helloRetryRandom is the ServerHello.random of a HelloRetryRequest (RFC
// 8446, 4.1.3).
var helloRetryRandom = string([]byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
})

// certificate reads the first certificate's subject, issuer and serial,
// and keeps the list for tls.certs.
func (t *tlsConn) certificate(body []byte) {
	in := cryptobyte.String(body)
	var list cryptobyte.String
	if !in.ReadUint24LengthPrefixed(&list) {
		return
	}
	t.certs = list
	var der cryptobyte.String
	if !list.ReadUint24LengthPrefixed(&der) {
		return
	}
	var cert, tbs, serial, issuer, subject cryptobyte.String
	if !der.ReadASN1(&cert, asn1.SEQUENCE) || !cert.ReadASN1(&tbs, asn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(asn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.ReadASN1(&serial, asn1.INTEGER) || !tbs.SkipASN1(asn1.SEQUENCE) ||
		!tbs.ReadASN1(&issuer, asn1.SEQUENCE) || !tbs.SkipASN1(asn1.SEQUENCE) ||
		!tbs.ReadASN1(&subject, asn1.SEQUENCE) {
		return
	}
	t.subject = appendName(t.subject[:0], subject)
	t.issuer = appendName(t.issuer[:0], issuer)
	t.serial = appendSerial(t.serial[:0], serial)
	t.info.Subject, t.info.Issuer, t.info.Serial = string(t.subject), string(t.issuer), string(t.serial)
}

// appendSerial writes a certificate serial's INTEGER content bytes as
// Suricata prints them: upper-case hex bytes joined by ':', a leading
// zero byte (the sign) kept ("00:E7:F9:...").
func appendSerial(dst, serial []byte) []byte {
	const digits = "0123456789ABCDEF"
	for i, b := range serial {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, digits[b>>4], digits[b&0xf])
	}
	return dst
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
		tx.Buf[rules.BufTLSCertSerial] = t.serial
	}
	if dir == stream.ToClient {
		list := cryptobyte.String(t.certs)
		var der cryptobyte.String
		if list.ReadUint24LengthPrefixed(&der) && len(der) > 0 {
			tx.Buf[rules.BufTLSCerts] = der
		}
		if t.info.JA3S != nil {
			tx.Buf[rules.BufJA3SHash] = t.ja3sHex[:]
		}
	}
	if t.info.JA3 != nil {
		tx.Buf[rules.BufJA3Hash] = t.ja3hex[:]
		if dir == stream.ToServer {
			// Suricata's ja3.string is to_server only; the server's Tx
			// repeating it would alert twice.
			tx.Buf[rules.BufJA3String] = t.ja3str
		}
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
