package dpi

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// ja3Max bounds the JA3 string; a ClientHello whose string is longer (only
// a hostile one: hundreds of cipher suites) gets no JA3.
const ja3Max = 2048

// maxList bounds the cipher suites and extensions kept for JA4.
const maxList = 160

// Handshake message types and extensions the engine reads.
const (
	recHandshake   = 0x16
	recAlert       = 0x15
	hsClientHello  = 1
	hsServerHello  = 2
	extSNI         = 0
	extGroups      = 10
	extPointFormat = 11
	extSigAlgs     = 13
	extALPN        = 16
	extVersions    = 43
)

// grease says whether v is a GREASE value (RFC 8701), which fingerprints
// ignore.
func grease(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// record returns the first TLS record's type, version and fragment as far
// as it is present, and whether the header is a TLS record header at all.
func record(b []byte) (typ byte, frag []byte, full bool, ok bool) {
	if len(b) < 5 || b[1] != 3 || b[2] > 4 {
		return 0, nil, false, false
	}
	n := int(binary.BigEndian.Uint16(b[3:]))
	if n == 0 || n > 1<<14+2048 {
		return 0, nil, false, false
	}
	if len(b)-5 < n {
		return b[0], b[5:], false, true
	}
	return b[0], b[5 : 5+n], true, true
}

// handshake returns the handshake message of type want at the start of a
// record fragment: more if the fragment is cut short, no if it is not one.
func handshake(frag []byte, fragFull bool, want byte) ([]byte, status) {
	if len(frag) < 4 {
		if fragFull || (len(frag) > 0 && frag[0] != want) {
			return nil, no
		}
		return nil, more
	}
	if frag[0] != want {
		return nil, no
	}
	n := int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])
	if n < 38 || n > MaxBuffer {
		return nil, no
	}
	if len(frag)-4 < n {
		if fragFull {
			// The message continues in a next record; the engine reads one.
			return nil, no
		}
		return nil, more
	}
	return frag[4 : 4+n], yes
}

// reader walks a byte slice; any read past its end marks it bad and
// returns zeros, so parsers check once at the end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.bad, r.b = true, nil
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.bad, r.b = true, nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// clientHello recognises a TLS ClientHello and reads SNI, ALPN, versions
// and the JA3/JA4 fingerprints.
func (f *Flow) clientHello(dir Dir, b []byte) status {
	if dir != Client || len(b) == 0 || b[0] != recHandshake {
		return no
	}
	if len(b) < 5 {
		return more
	}
	typ, frag, full, ok := record(b)
	if !ok || typ != recHandshake {
		return no
	}
	body, st := handshake(frag, full, hsClientHello)
	if st != yes {
		return st
	}
	var h hello
	if !h.parseClient(body) {
		return no
	}
	f.res.TLSOffered = h.version
	for i := 0; i < h.versions.len(); i++ {
		if v := h.versions.at(i); !grease(v) && v > f.res.TLSOffered && v <= 0x0304 {
			f.res.TLSOffered = v
		}
	}
	setText(f.res.host[:], &f.res.hostLen, h.sni)
	first := firstALPN(h.alpn)
	setText(f.res.alpn[:], &f.res.alpnLen, first)
	f.fingerprint(&h)
	return f.decide(appForOffer(h.alpn), phaseTLSServer)
}

// appForOffer names the app of a ClientHello's ALPN list before the server
// answers (and for good in TLS 1.3, whose ServerHello hides the choice):
// HTTP/2 only when h2 is all the client offered, HTTPS when it offered any
// HTTP version, else by the first protocol.
func appForOffer(ext []byte) App {
	r := reader{b: ext}
	list := reader{b: r.bytes(int(r.u16()))}
	onlyH2, http := true, false
	first := AppTLS
	for n := 0; len(list.b) > 0; n++ {
		p := list.bytes(int(list.u8()))
		if list.bad {
			break
		}
		a := appForALPN(p)
		if n == 0 {
			first = a
		}
		onlyH2 = onlyH2 && a == AppHTTP2
		http = http || a == AppHTTP2 || a == AppHTTPS
	}
	switch {
	case http && onlyH2:
		return AppHTTP2
	case http:
		return AppHTTPS
	}
	return first
}

// serverHello reads the negotiated version, cipher and ALPN.
func (f *Flow) serverHello(b []byte, final bool) status {
	typ, frag, full, ok := record(b)
	if !ok {
		if len(b) < 5 && !final && b[0] == recHandshake {
			return more
		}
		f.phase = phaseDone
		return no
	}
	if typ != recHandshake {
		f.phase = phaseDone // an alert: no version was negotiated
		return no
	}
	body, st := handshake(frag, full, hsServerHello)
	if st == more && !final {
		return more
	}
	if st != yes {
		f.phase = phaseDone
		return no
	}
	r := reader{b: body}
	version := r.u16()
	random := r.bytes(32)
	r.bytes(int(r.u8())) // session id
	cipher := r.u16()
	r.u8() // compression
	var alpn []byte
	if len(r.b) >= 2 {
		exts := reader{b: r.bytes(int(r.u16()))}
		for len(exts.b) >= 4 && !exts.bad {
			t, data := exts.u16(), exts.bytes(int(exts.u16()))
			switch t {
			case extVersions:
				if len(data) == 2 {
					version = binary.BigEndian.Uint16(data)
				}
			case extALPN:
				alpn = firstALPN(data)
			}
		}
	}
	if r.bad {
		f.phase = phaseDone
		return no
	}
	if string(random) == helloRetry {
		// A HelloRetryRequest: the real ServerHello follows the client's
		// second ClientHello.
		return yes
	}
	f.res.TLSVersion, f.res.TLSCipher = version, cipher
	if alpn != nil {
		setText(f.res.alpn[:], &f.res.alpnLen, alpn)
		f.res.App = appForALPN(alpn)
	}
	f.phase = phaseDone
	return yes
}

// helloRetry is the ServerHello.random of a HelloRetryRequest (RFC 8446).
var helloRetry = string([]byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
})

// appForALPN names the app an ALPN protocol id announces: h2 is HTTP/2,
// http/1.x is HTTPS, anything else (or nothing) plain TLS.
func appForALPN(p []byte) App {
	switch string(p) {
	case "h2":
		return AppHTTP2
	case "http/1.1", "http/1.0", "http/0.9":
		return AppHTTPS
	case "postgresql":
		return AppPostgres
	}
	return AppTLS
}

// firstALPN returns the first protocol of an ALPN extension body.
func firstALPN(ext []byte) []byte {
	r := reader{b: ext}
	list := reader{b: r.bytes(int(r.u16()))}
	p := list.bytes(int(list.u8()))
	if list.bad || r.bad || len(p) == 0 {
		return nil
	}
	return p
}

// u16s is a list of big-endian uint16 on the wire.
type u16s []byte

func (l u16s) len() int        { return len(l) / 2 }
func (l u16s) at(i int) uint16 { return binary.BigEndian.Uint16(l[2*i:]) }

// hello is a parsed ClientHello: views into the message.
type hello struct {
	version  uint16
	ciphers  u16s
	sni      []byte
	alpn     []byte
	groups   u16s
	points   []byte
	sigalgs  u16s
	versions u16s
	extTypes [maxList]uint16
	nExt     int // every extension, GREASE included
	hasSNI   bool
}

func (h *hello) parseClient(body []byte) bool {
	r := reader{b: body}
	h.version = r.u16()
	r.bytes(32)
	if sid := r.u8(); sid > 32 {
		return false
	} else {
		r.bytes(int(sid))
	}
	cl := int(r.u16())
	if cl < 2 || cl%2 != 0 {
		return false
	}
	h.ciphers = u16s(r.bytes(cl))
	comp := int(r.u8())
	if comp < 1 {
		return false
	}
	r.bytes(comp)
	if r.bad || h.version>>8 != 3 {
		return false
	}
	if len(r.b) == 0 {
		return true // no extensions (SSL 3.0 style)
	}
	exts := reader{b: r.bytes(int(r.u16()))}
	if r.bad {
		return false
	}
	for len(exts.b) > 0 {
		t, data := exts.u16(), exts.bytes(int(exts.u16()))
		if exts.bad {
			return false
		}
		if h.nExt < maxList {
			h.extTypes[h.nExt] = t
		}
		h.nExt++
		d := reader{b: data}
		switch t {
		case extSNI:
			list := reader{b: d.bytes(int(d.u16()))}
			for len(list.b) > 0 && !list.bad {
				typ, name := list.u8(), list.bytes(int(list.u16()))
				if typ == 0 && !list.bad && h.sni == nil {
					h.sni = name
				}
			}
			h.hasSNI = true
		case extALPN:
			h.alpn = data
		case extGroups:
			h.groups = u16s(d.bytes(int(d.u16()) &^ 1))
		case extPointFormat:
			h.points = d.bytes(int(d.u8()))
		case extSigAlgs:
			h.sigalgs = u16s(d.bytes(int(d.u16()) &^ 1))
		case extVersions:
			h.versions = u16s(d.bytes(int(d.u8()) &^ 1))
		}
	}
	return true
}

// fingerprint writes the JA3 string and hash and the JA4 fingerprint.
func (f *Flow) fingerprint(h *hello) {
	w := appender{b: f.ja3[:0:ja3Max]}
	w.uint(uint(h.version))
	w.byte(',')
	w.list(h.ciphers)
	w.byte(',')
	n := min(h.nExt, maxList)
	first := true
	for _, t := range h.extTypes[:n] {
		if !grease(t) {
			if !first {
				w.byte('-')
			}
			w.uint(uint(t))
			first = false
		}
	}
	w.byte(',')
	w.list(h.groups)
	w.byte(',')
	for i, p := range h.points {
		if i > 0 {
			w.byte('-')
		}
		w.uint(uint(p))
	}
	if w.over || h.nExt > maxList {
		f.ja3Len = 0
	} else {
		f.ja3Len = uint16(len(w.b))
		f.res.JA3 = md5.Sum(w.b)
	}
	f.ja4(h)
}

// ja4 computes the JA4 fingerprint: "t13d1516h2_<ciphers>_<extensions>".
func (f *Flow) ja4(h *hello) {
	a := f.res.ja4[:0:36]
	a = append(a, 't')
	ver := h.version
	for i := 0; i < h.versions.len(); i++ {
		if v := h.versions.at(i); !grease(v) && v > ver {
			ver = v
		}
	}
	switch ver {
	case 0x0304:
		a = append(a, "13"...)
	case 0x0303:
		a = append(a, "12"...)
	case 0x0302:
		a = append(a, "11"...)
	case 0x0301:
		a = append(a, "10"...)
	case 0x0300:
		a = append(a, "s3"...)
	default:
		a = append(a, "00"...)
	}
	if h.hasSNI {
		a = append(a, 'd')
	} else {
		a = append(a, 'i')
	}
	var ciphers, exts [maxList]uint16
	nc, ne := 0, 0
	for i := 0; i < h.ciphers.len(); i++ {
		if v := h.ciphers.at(i); !grease(v) {
			if nc < maxList {
				ciphers[nc] = v
			}
			nc++
		}
	}
	extCount := 0
	for _, t := range h.extTypes[:min(h.nExt, maxList)] {
		if grease(t) {
			continue
		}
		extCount++
		if t != extSNI && t != extALPN {
			exts[ne] = t
			ne++
		}
	}
	extCount += max(h.nExt-maxList, 0)
	a = twoDigits(a, nc)
	a = twoDigits(a, extCount)
	alpn := firstALPN(h.alpn)
	switch {
	case len(alpn) == 0:
		a = append(a, "00"...)
	case alnum(alpn[0]) && alnum(alpn[len(alpn)-1]):
		a = append(a, alpn[0], alpn[len(alpn)-1])
	default:
		a = append(a, hexDigit(alpn[0]>>4), hexDigit(alpn[len(alpn)-1]))
	}
	a = append(a, '_')
	cs := ciphers[:min(nc, maxList)]
	slices.Sort(cs)
	w := appender{b: f.scratch[:0]}
	w.hexList(cs)
	a = appendHash12(a, w.b, len(cs) == 0)
	a = append(a, '_')
	es := exts[:ne]
	slices.Sort(es)
	w = appender{b: f.scratch[:0]}
	w.hexList(es)
	if h.sigalgs.len() > 0 {
		w.byte('_')
		for i := 0; i < h.sigalgs.len(); i++ {
			if i > 0 {
				w.byte(',')
			}
			w.hex4(h.sigalgs.at(i))
		}
	}
	a = appendHash12(a, w.b, ne == 0)
	_ = a
}

func appendHash12(a, in []byte, empty bool) []byte {
	if empty {
		return append(a, "000000000000"...)
	}
	sum := sha256.Sum256(in)
	for _, c := range sum[:6] {
		a = append(a, hexDigit(c>>4), hexDigit(c&0xf))
	}
	return a
}

func hexDigit(c byte) byte { return "0123456789abcdef"[c&0xf] }

func alnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func twoDigits(a []byte, n int) []byte {
	n = min(n, 99)
	return append(a, byte('0'+n/10), byte('0'+n%10))
}

// appender writes into a fixed buffer and remembers an overflow instead of
// growing it.
type appender struct {
	b    []byte
	over bool
}

func (w *appender) byte(c byte) {
	if len(w.b) == cap(w.b) {
		w.over = true
		return
	}
	w.b = append(w.b, c)
}

func (w *appender) uint(v uint) {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	for _, c := range d[i:] {
		w.byte(c)
	}
}

// list writes a JA3 list: decimal values without GREASE, joined by '-'.
func (w *appender) list(l u16s) {
	first := true
	for i := 0; i < l.len(); i++ {
		v := l.at(i)
		if grease(v) {
			continue
		}
		if !first {
			w.byte('-')
		}
		w.uint(uint(v))
		first = false
	}
}

func (w *appender) hex4(v uint16) {
	w.byte(hexDigit(byte(v >> 12)))
	w.byte(hexDigit(byte(v >> 8)))
	w.byte(hexDigit(byte(v >> 4)))
	w.byte(hexDigit(byte(v)))
}

func (w *appender) hexList(l []uint16) {
	for i, v := range l {
		if i > 0 {
			w.byte(',')
		}
		w.hex4(v)
	}
}
