package dpi

// Dir is the direction of a payload within a flow.
type Dir uint8

const (
	// Client is the flow's originator: the sender of the SYN, or of the
	// first packet seen.
	Client Dir = 0
	// Server is the other side.
	Server Dir = 1
)

func (d Dir) other() Dir { return d ^ 1 }

// Transport protocols a Flow carries (IP protocol numbers).
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// MaxBuffer bounds the bytes of one message the engine reassembles from
// several TCP segments (a TLS ClientHello with a post-quantum key share, HTTP
// request headers). A message still incomplete at this size is judged on
// what arrived.
const MaxBuffer = 16 << 10

// maxPackets is how many messages (payload packets, or the segments of
// one reassembled message) a flow gets before the engine stops looking: every protocol it knows announces itself
// in the first message of one side or the other.
const maxPackets = 10

// Result is what the engine learned about a flow. It is a value with no
// pointers; the byte-slice accessors return views of its own arrays.
type Result struct {
	App App
	// TLSVersion is the negotiated version on the wire (0x0303 is 1.2):
	// the ServerHello's, or its supported_versions for 1.3. 0 before the
	// ServerHello or when there is no TLS.
	TLSVersion uint16
	// TLSOffered is the highest version the client offered
	// (supported_versions, else the ClientHello's version).
	TLSOffered uint16
	// TLSCipher is the cipher suite the server chose.
	TLSCipher uint16
	// JA3 is the MD5 of the ClientHello's JA3 string (zero when there was
	// no ClientHello); JA4 is its JA4 fingerprint (a_b_c, 36 characters).
	JA3 [16]byte
	ja4 [36]byte

	hostLen, alpnLen, methodLen, pathLen, detailLen uint8
	host                                            [253]byte
	alpn                                            [32]byte
	method                                          [16]byte
	path                                            [128]byte
	detail                                          [64]byte
}

// Host is the TLS SNI, the HTTP Host header or the DNS query name.
func (r *Result) Host() []byte { return r.host[:r.hostLen] }

// ALPN is the protocol the server selected (TLS 1.2 and earlier), else the
// client's first offer.
func (r *Result) ALPN() []byte { return r.alpn[:r.alpnLen] }

// Method and Path are an HTTP/1 request's.
func (r *Result) Method() []byte { return r.method[:r.methodLen] }

// Path is the HTTP/1 request target, cut at 128 bytes.
func (r *Result) Path() []byte { return r.path[:r.pathLen] }

// Detail is a protocol's own attribute: the SSH software and version, the
// MySQL server version, the LDAP bind name, the Kerberos message, the SNMP
// or NTP version, the SMTP/FTP greeting...
func (r *Result) Detail() []byte { return r.detail[:r.detailLen] }

// JA4 is the JA4 fingerprint, empty without a ClientHello.
func (r *Result) JA4() []byte {
	if r.ja4[0] == 0 {
		return nil
	}
	return r.ja4[:]
}

// TLSVersionName is TLSVersion as a ContextProfile writes it ("1.2"), ""
// when none was negotiated.
func (r *Result) TLSVersionName() string { return VersionName(r.TLSVersion) }

// VersionName renders a TLS wire version: "1.0".."1.3", "ssl3", "" for 0 or
// anything else.
func VersionName(v uint16) string {
	switch v {
	case 0x0300:
		return "ssl3"
	case 0x0301:
		return "1.0"
	case 0x0302:
		return "1.1"
	case 0x0303:
		return "1.2"
	case 0x0304:
		return "1.3"
	}
	return ""
}

func setText(dst []byte, n *uint8, src []byte) {
	*n = uint8(copy(dst, src))
}

// status is a parser's answer about the bytes it was given.
type status uint8

const (
	no   status = iota // not this protocol
	more               // consistent so far; needs more bytes of the same message
	yes                // recognised (and the message consumed as far as needed)
)

// phase is what the flow waits for.
type phase uint8

const (
	phaseDetect    phase = iota // no app yet
	phaseTLSServer              // ClientHello seen; waiting for the ServerHello
	phaseHTTP                   // request line seen; reading headers
	phaseSSHPeer                // one SSH banner seen; waiting for the other
	phaseMailCmd                // a 220 greeting; the client's command says SMTP or FTP
	phaseDone
)

// Flow is the per-flow state of the engine: fixed size, no pointers, no
// references to the payloads it was fed, so an agent can keep it in a table
// or a pool and reuse it with Reset.
type Flow struct {
	res       Result
	transport uint8
	phase     phase
	pkts      [2]uint8 // payload packets fed per direction
	judged    uint8    // packets that completed a message (the budget)
	miss      [2]bool  // the direction's first message matched nothing
	ja3Len    uint16
	bannerDir Dir // who sent the first SSH banner
	bufDir    Dir
	bufLen    int
	ja3       [ja3Max]byte
	scratch   [8 * maxList]byte // JA4 hash input
	buf       [MaxBuffer]byte
}

// Reset readies f for a new flow over transport (TCP or UDP).
func (f *Flow) Reset(transport uint8) {
	f.res = Result{}
	f.transport = transport
	f.phase = phaseDetect
	f.pkts = [2]uint8{}
	f.judged = 0
	f.miss = [2]bool{}
	f.ja3Len = 0
	f.bufLen = 0
}

// Result is what is known so far.
func (f *Flow) Result() *Result { return &f.res }

// Done says the app is decided and every attribute a rule needs is known or
// will never come; further Feeds change nothing.
func (f *Flow) Done() bool { return f.phase == phaseDone }

// JA3String is the ClientHello's JA3 string (JA3 is its MD5); it aliases f.
func (f *Flow) JA3String() []byte { return f.ja3[:f.ja3Len] }

// Feed gives the engine one packet's payload in direction dir: a TCP
// segment's payload in sequence order (no retransmissions), or one UDP
// datagram. It returns the result so far and whether it is final. Empty
// payloads are ignored. Feed does not keep payload.
func (f *Flow) Feed(dir Dir, payload []byte) (*Result, bool) {
	if f.phase == phaseDone || len(payload) == 0 {
		return &f.res, f.phase == phaseDone
	}
	dir &= 1
	if f.pkts[dir] < 255 {
		f.pkts[dir]++
	}
	data, final := payload, f.transport != TCP
	if f.bufLen > 0 {
		if f.bufDir == dir {
			f.bufLen += copy(f.buf[f.bufLen:], payload)
			data, final = f.buf[:f.bufLen], f.bufLen == len(f.buf)
		} else {
			// The peer answered, so the buffered message is all that side
			// says before the answer: judge it as it is.
			f.step(f.bufDir, f.buf[:f.bufLen], true)
			f.bufLen = 0
		}
	}
	if f.phase != phaseDone {
		if st := f.step(dir, data, final); st == more {
			// A message in several segments costs one packet of the budget:
			// MaxBuffer bounds it instead.
			if f.bufLen == 0 {
				f.bufDir = dir
				f.bufLen = copy(f.buf[:], data)
			}
		} else {
			f.bufLen = 0
			f.judged++
		}
	}
	if f.phase != phaseDone && f.judged >= maxPackets {
		f.phase = phaseDone
	}
	return &f.res, f.phase == phaseDone
}

// Finish ends the flow: whatever was buffered is judged as it is. An
// agent calls it when a flow ends or it stops inspecting.
func (f *Flow) Finish() *Result {
	if f.phase != phaseDone && f.bufLen > 0 {
		f.step(f.bufDir, f.buf[:f.bufLen], true)
	}
	f.bufLen = 0
	f.phase = phaseDone
	return &f.res
}

// step runs the parser of the current phase over one message's bytes.
// final says no more bytes of this message will come.
func (f *Flow) step(dir Dir, b []byte, final bool) status {
	var st status
	switch f.phase {
	case phaseDetect:
		if f.miss[dir] && f.transport == TCP {
			return no
		}
		st = f.detect(dir, b, final)
		if st == no {
			f.miss[dir] = true
			if f.miss[dir.other()] || (f.transport != TCP && f.pkts[dir] >= 3) {
				f.phase = phaseDone
			}
		}
		return st
	case phaseTLSServer:
		if dir != Server {
			return no
		}
		st = f.serverHello(b, final)
	case phaseHTTP:
		if dir != Client {
			f.phase = phaseDone
			return no
		}
		st = f.httpRequest(b, final)
	case phaseSSHPeer:
		if dir == f.bannerDir {
			return no
		}
		if f.sshBanner(dir, b, final) == more {
			return more
		}
		f.phase = phaseDone
		return yes
	case phaseMailCmd:
		if dir != Client {
			return no
		}
		st = f.mailCommand(b, final)
	}
	if st == more && final {
		f.phase = phaseDone
		st = no
	}
	return st
}

// detect tries every protocol on the first message of a direction.
func (f *Flow) detect(dir Dir, b []byte, final bool) status {
	if f.transport == UDP {
		return f.detectUDP(b)
	}
	best := no
	for _, try := range tcpDetectors {
		st := try(f, dir, b)
		if f.phase != phaseDetect || st == yes {
			// Decided; a "more" here means the app reads further bytes of
			// the same message (HTTP headers).
			if st == more && final {
				f.phase = phaseDone
				return yes
			}
			return st
		}
		if st == more {
			best = more
		}
	}
	if best == more && final {
		return no
	}
	return best
}

var tcpDetectors = [...]func(f *Flow, dir Dir, b []byte) status{
	(*Flow).clientHello,
	(*Flow).httpStart,
	(*Flow).sshStart,
	(*Flow).greeting,
	(*Flow).mailCommandStart,
	(*Flow).postgres,
	(*Flow).smb,
	(*Flow).rdp,
	(*Flow).kerberosTCP,
	(*Flow).dnsTCP,
	(*Flow).ldap,
	(*Flow).mongo,
	(*Flow).mysql,
	(*Flow).redis,
}

func (f *Flow) detectUDP(b []byte) status {
	switch {
	case f.dns(b, false) == yes:
	case f.ntp(b) == yes:
	case f.snmp(b) == yes:
	case f.kerberos(b) == yes:
	case f.cldap(b) == yes:
	default:
		return no
	}
	f.phase = phaseDone
	return yes
}

// decide sets the app and moves to the next phase.
func (f *Flow) decide(a App, next phase) status {
	f.res.App = a
	f.phase = next
	return yes
}

func setString(dst []byte, n *uint8, src string) {
	*n = uint8(copy(dst, src))
}
