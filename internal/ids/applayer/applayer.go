// Package applayer turns a connection's reassembled streams (or its UDP
// datagrams) into application-layer transactions for the intrusion
// detection engine: the protocol is identified by internal/dpi from the
// first payload, regardless of port, so the IDS and the DPI engine agree;
// then HTTP/1.x requests and responses, TLS hellos, DNS queries and SSH
// banners become Tx values carrying the sticky buffers signatures look in
// (http.uri, tls.sni, dns.query, ...) and the fields of Suricata's EVE
// records.
//
// Memory per connection is bounded: an HTTP head up to 32 KiB, a body up
// to 64 KiB per transaction (request_body / response_body depth; the rest
// of a body is consumed uninspected), 4 requests awaiting their responses,
// a DNS-over-TCP message up to 64 KiB, an SSH banner up to 255 bytes, a
// TLS server flight up to 64 KiB, and 16 KiB per direction (plus dpi's
// pooled state) while the protocol is not yet known. Nothing grows beyond
// these on any input. Call Close when a connection ends: it flushes open
// transactions and returns the dpi state to its pool.
package applayer

import (
	"bytes"
	"sync"

	"github.com/bulkhead/bulkhead/internal/dpi"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// Tx is one application-layer transaction: an HTTP request or response, a
// TLS hello, a DNS query, an SSH banner. A Tx and everything it points to
// is valid only during the emit call that hands it over; the strings in
// its info structs are immutable and may be kept, the structs themselves
// are reused (copy *tx.HTTP to keep it).
type Tx struct {
	Proto rules.Proto
	Dir   stream.Dir
	// ID numbers the connection's transactions from 0, as EVE's tx_id.
	// One transaction seen at two stages keeps its ID: an HTTP response
	// has its request's (and carries its request buffers), the server's
	// TLS flight has the ClientHello's. A signature should alert at most
	// once per (connection, ID), as Suricata's do per transaction.
	ID uint64
	// Buf holds the sticky buffers this transaction has; nil is absent.
	//
	// A multi-buffer (tls.certs: one value per certificate of the chain)
	// holds its first value on the transaction's main Tx; each further
	// value comes right after it as one more Tx of the same ID and
	// direction, marked Continues, that carries only that buffer (and the
	// EVE info), with TLSVersion 0. A rule that does not look at the
	// multi-buffer cannot match those, so it is not evaluated twice for
	// one transaction.
	//
	// Buffers Suricata has in one direction only are set only on that
	// direction's Tx (http.accept_enc and http.accept_lang on requests,
	// ja3.string on the ClientHello's, ja3s.hash, tls.cert_serial and
	// tls.certs on the server's), so that a response carrying its
	// request's buffers does not match a request-only rule again.
	Buf [rules.NumBuffers][]byte
	// TLSVersion is the version the transaction's hello states (0x0303
	// is 1.2): on the ClientHello's the highest the client offered, on
	// the server's the negotiated one (tls.version matches it).
	TLSVersion uint16
	// Continues says this Tx is the previous one's transaction again,
	// with the next value of a multi-buffer (see Buf): a rule that
	// alerted on the previous Tx should not alert again (Suricata alerts
	// once per transaction however many of its certificates match).
	Continues bool

	HTTP *HTTPInfo
	TLS  *TLSInfo
	DNS  *DNSInfo
	SSH  *SSHInfo
}

// HTTPInfo is EVE's "http" object.
type HTTPInfo struct {
	Hostname    string `json:"hostname,omitempty"`
	URL         string `json:"url,omitempty"`
	UserAgent   string `json:"http_user_agent,omitempty"`
	ContentType string `json:"http_content_type,omitempty"`
	Method      string `json:"http_method,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	Status      int    `json:"status,omitempty"`
	Length      int    `json:"length"`
	Referer     string `json:"http_refer,omitempty"`
}

// TLSInfo is EVE's "tls" object.
type TLSInfo struct {
	SNI     string   `json:"sni,omitempty"`
	Version string   `json:"version,omitempty"`
	Subject string   `json:"subject,omitempty"`
	Issuer  string   `json:"issuerdn,omitempty"`
	Serial  string   `json:"serial,omitempty"`
	JA3     *JA3Info `json:"ja3,omitempty"`
	JA3S    *JA3Info `json:"ja3s,omitempty"`
}

// JA3Info is EVE's "tls.ja3" object.
type JA3Info struct {
	Hash   string `json:"hash"`
	String string `json:"string,omitempty"`
}

// DNSInfo is EVE's "dns" object of a query.
type DNSInfo struct {
	Type   string `json:"type"`
	ID     uint16 `json:"id"`
	RRName string `json:"rrname"`
	RRType string `json:"rrtype"`
}

// SSHInfo is EVE's "ssh" object.
type SSHInfo struct {
	Client *SSHPeer `json:"client,omitempty"`
	Server *SSHPeer `json:"server,omitempty"`
}

// SSHPeer is one side of SSHInfo.
type SSHPeer struct {
	ProtoVersion    string `json:"proto_version"`
	SoftwareVersion string `json:"software_version"`
}

// maxIdentify bounds what a direction buffers while the protocol is not
// known: what dpi reassembles of one message.
const maxIdentify = dpi.MaxBuffer

var flowPool = sync.Pool{New: func() any { return new(dpi.Flow) }}

// Conn is one connection's application-layer state. The zero value is
// unusable: call Init.
type Conn struct {
	transport uint8
	proto     rules.Proto
	// ident is the dpi state while identification (or, for TLS, the
	// handshake) goes on; nil before Init and after.
	ident *dpi.Flow
	// early holds each direction's bytes until the protocol is known.
	early [2][]byte
	fed   [2]int // bytes of early already given to dpi
	dead  bool   // nothing more to parse on this connection

	tx   Tx
	http *httpConn
	tls  *tlsConn
	dns  *dnsConn
	ssh  *sshConn
}

// Init readies c for a connection over transport (6 TCP, 17 UDP) between
// the ports; ports do not decide the protocol.
func (c *Conn) Init(transport uint8, srcPort, dstPort uint16) {
	c.release()
	*c = Conn{transport: transport, early: [2][]byte{c.early[0][:0], c.early[1][:0]}, http: c.http, dns: c.dns}
	if c.http != nil {
		c.http.reset()
	}
	if c.dns != nil {
		c.dns.reset()
	}
	c.ident = flowPool.Get().(*dpi.Flow)
	c.ident.Reset(transport)
	_, _ = srcPort, dstPort // identification looks at bytes only
}

// Proto is the identified application protocol, 0 until (and unless) one
// is.
func (c *Conn) Proto() rules.Proto { return c.proto }

func (c *Conn) release() {
	if c.ident != nil {
		flowPool.Put(c.ident)
		c.ident = nil
	}
}

// Stream takes in-order TCP bytes of direction dir (from stream.Conn's
// deliver) and emits the transactions they complete. It keeps no reference
// to data.
func (c *Conn) Stream(dir stream.Dir, data []byte, emit func(*Tx)) {
	if c.dead || len(data) == 0 {
		return
	}
	dir &= 1
	if c.proto == 0 {
		c.identify(dir, data, emit)
		return
	}
	if c.ident != nil {
		c.handshake(dir, data, emit)
	}
	c.parse(dir, data, emit)
}

// Datagram takes one UDP payload of direction dir.
func (c *Conn) Datagram(dir stream.Dir, data []byte, emit func(*Tx)) {
	if c.dead || len(data) == 0 {
		return
	}
	dir &= 1
	if c.proto == 0 {
		if c.ident == nil {
			return
		}
		res, done := c.ident.Feed(dpi.Dir(dir), data)
		if p := protoOf(res); p != 0 {
			c.decided(p)
		} else if done {
			c.undecided()
			return
		} else {
			return
		}
	}
	if c.proto == rules.ProtoDNS {
		c.dnsState().message(c, dir, data, emit)
	}
}

// Close ends the connection: transactions still open (a body cut short, a
// response read until close) are emitted as they are.
func (c *Conn) Close(emit func(*Tx)) {
	if c.http != nil && c.proto == rules.ProtoHTTP && !c.dead {
		c.http.close(c, emit)
	}
	if t := c.tls; t != nil && c.proto == rules.ProtoTLS && t.hello && t.version != 0 && c.ident == nil {
		// A TLS 1.2 flight cut before its Certificate.
		t.serverTx(c, emit)
	}
	c.release()
	c.dead = true
}

// identify buffers the first bytes and asks dpi what they are.
//
// A direction whose first bytes look like a text protocol's first line (a
// capital letter, printable bytes) is held until the line is complete, and
// handed to dpi in one piece: dpi judges some lines (an HTTP request with
// a method it does not list) differently when it sees only their start,
// and the outcome must not depend on how the line was segmented.
func (c *Conn) identify(dir stream.Dir, data []byte, emit func(*Tx)) {
	if c.ident == nil {
		return
	}
	if other := dir ^ 1; c.fed[other] < len(c.early[other]) {
		// The peer spoke: its held line is all it said before that.
		c.feedIdent(other, c.early[other][c.fed[other]:], emit)
		if c.proto != 0 || c.dead {
			if c.proto != 0 && !c.dead {
				c.Stream(dir, data, emit)
			}
			return
		}
	}
	keep := min(maxIdentify-len(c.early[dir]), len(data))
	c.early[dir] = append(c.early[dir], data[:keep]...)
	if c.holdLine(dir) {
		return
	}
	unfed := c.early[dir][c.fed[dir]:]
	if keep < len(data) {
		// Beyond what is kept for the parsers: dpi still sees it.
		c.feedIdent(dir, unfed, emit)
		if c.proto == 0 && !c.dead {
			c.feedIdent(dir, data[keep:], emit)
		}
		return
	}
	c.feedIdent(dir, unfed, emit)
}

// holdLine says whether direction dir's first line is still incomplete
// and worth waiting for.
func (c *Conn) holdLine(dir stream.Dir) bool {
	e := c.early[dir]
	if c.fed[dir] != 0 || len(e) == 0 || e[0] < 'A' || e[0] > 'Z' || len(e) >= maxHeldLine || len(e) == maxIdentify {
		return false
	}
	for _, b := range e {
		if b == '\n' || (b < ' ' && b != '\r' && b != '\t') || b >= 0x7f {
			return false
		}
	}
	return true
}

// looksLikeRequest says whether b starts with a complete HTTP/1.x request
// line as lenient servers take it: an upper-case method, blanks, a target,
// blanks, "HTTP/d.d", optional blanks. Like holdLine it looks at printable
// lines shorter than maxHeldLine only, so its answer does not depend on
// segmentation.
func looksLikeRequest(b []byte) bool {
	i := bytes.IndexByte(b, '\n')
	if i < 0 || i >= maxHeldLine {
		return false
	}
	l := bytes.TrimSuffix(b[:i], []byte{'\r'})
	for _, ch := range l {
		if (ch < ' ' && ch != '\t') || ch >= 0x7f {
			return false
		}
	}
	n := 0
	for n < len(l) && n < 24 && 'A' <= l[n] && l[n] <= 'Z' {
		n++
	}
	if n == 0 || n == len(l) || (l[n] != ' ' && l[n] != '\t') {
		return false
	}
	fields := bytes.Fields(l[n:])
	if len(fields) != 2 {
		return false
	}
	v := fields[1]
	return len(v) == 8 && string(v[:5]) == "HTTP/" && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' && v[7] <= '9'
}

// maxHeldLine is how long a first line may get while held: dpi's own limit
// for an HTTP request line.
const maxHeldLine = 8192

// feedIdent gives dpi bytes of direction dir (marking early bytes fed) and
// acts on its answer.
func (c *Conn) feedIdent(dir stream.Dir, b []byte, emit func(*Tx)) {
	first := c.fed[dir] == 0
	c.fed[dir] = len(c.early[dir])
	if len(b) == 0 {
		return
	}
	res, done := c.ident.Feed(dpi.Dir(dir), b)
	p := protoOf(res)
	if p == 0 && first && dir == stream.ToServer && c.transport == dpi.TCP && looksLikeRequest(c.early[dir]) {
		// dpi is strict about the request line ("GET  /  HTTP/1.1" with
		// extra blanks is no HTTP to it); servers are not, and the IDS
		// must not be evaded by what a server accepts.
		p = rules.ProtoHTTP
	}
	if p == 0 {
		if done {
			c.undecided()
		}
		return
	}
	c.decided(p)
	if c.ident != nil {
		c.tlsState().update(c, dir, emit)
	}
	// Replay what was buffered, the other direction's first (it spoke
	// before this one's bytes that decided).
	other := dir ^ 1
	for _, d := range [2]stream.Dir{other, dir} {
		e := c.early[d]
		c.early[d], c.fed[d] = e[:0], 0
		if len(e) > 0 && !c.dead {
			c.parse(d, e, emit)
		}
	}
}

// handshake keeps feeding dpi while it reads the TLS handshake.
func (c *Conn) handshake(dir stream.Dir, data []byte, emit func(*Tx)) {
	c.ident.Feed(dpi.Dir(dir), data)
	c.tlsState().update(c, dir, emit)
}

// protoOf maps what dpi found to a rule protocol: anything that began with
// a TLS ClientHello is TLS (HTTP/2 over TLS included), the cleartext HTTP/2
// preface is HTTP.
func protoOf(r *dpi.Result) rules.Proto {
	if r.TLSOffered != 0 {
		return rules.ProtoTLS
	}
	switch r.App {
	case dpi.AppHTTP, dpi.AppHTTP2:
		return rules.ProtoHTTP
	case dpi.AppTLS, dpi.AppHTTPS:
		return rules.ProtoTLS
	case dpi.AppSSH:
		return rules.ProtoSSH
	case dpi.AppDNS:
		return rules.ProtoDNS
	case dpi.AppSMTP:
		return rules.ProtoSMTP
	case dpi.AppFTP:
		return rules.ProtoFTP
	case dpi.AppSMB:
		return rules.ProtoSMB
	}
	return 0
}

func (c *Conn) decided(p rules.Proto) {
	c.proto = p
	if p != rules.ProtoTLS {
		// Only TLS needs dpi further (the ServerHello's version).
		c.release()
	}
	switch p {
	case rules.ProtoHTTP:
		if c.ident == nil && c.transport == dpi.TCP {
			c.httpState()
		}
	case rules.ProtoSMTP, rules.ProtoFTP, rules.ProtoSMB:
		// Identified for rule headers; no transactions parsed.
		c.dead = true
	}
}

func (c *Conn) undecided() {
	c.release()
	c.dead = true
	c.early = [2][]byte{c.early[0][:0], c.early[1][:0]}
	c.fed = [2]int{}
}

// parse hands in-order bytes to the protocol's parser.
func (c *Conn) parse(dir stream.Dir, data []byte, emit func(*Tx)) {
	switch c.proto {
	case rules.ProtoHTTP:
		c.httpState().stream(c, dir, data, emit)
	case rules.ProtoDNS:
		c.dnsState().stream(c, dir, data, emit)
	case rules.ProtoSSH:
		c.sshState().stream(c, dir, data, emit)
	case rules.ProtoTLS:
		if dir == stream.ToClient && c.tls != nil && !c.dead {
			c.tls.serverBytes(c, data, emit)
		}
	}
}

// newTx resets the connection's Tx for a transaction of direction dir.
func (c *Conn) newTx(dir stream.Dir) *Tx {
	tx := &c.tx
	tx.Buf = [rules.NumBuffers][]byte{}
	tx.Proto, tx.Dir, tx.ID, tx.TLSVersion, tx.Continues = c.proto, dir, 0, 0, false
	tx.HTTP, tx.TLS, tx.DNS, tx.SSH = nil, nil, nil, nil
	return tx
}

// textCache turns bytes into a string, allocating only when they differ
// from the last ones (a keep-alive connection repeats its host and user
// agent).
type textCache struct{ s string }

func (t *textCache) get(b []byte) string {
	if string(b) != t.s {
		t.s = string(b)
	}
	return t.s
}
