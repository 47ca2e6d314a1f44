// Package rules reads signatures written in the Suricata/Snort rule
// language into Rule values: the header (action, protocol, addresses,
// ports, direction) resolved against address and port variables, and the
// options in order. It is pure: no I/O beyond the readers it is given.
//
// A rule that uses something the engine cannot honour is not loaded; it is
// reported as a Problem with its sid and the reason, and the other rules
// load.
package rules

import "net/netip"

// Action is what a matching rule does.
type Action uint8

const (
	ActionAlert Action = iota + 1
	ActionDrop
	ActionReject
	ActionPass
)

// Proto is the rule header's protocol. The transport protocols match
// packets; the application protocols match flows the application layer
// identified (and imply their transport: tls, http, ssh, smtp, ftp, smb
// TCP; dns both).
type Proto uint8

const (
	ProtoIP Proto = iota + 1
	ProtoTCP
	ProtoUDP
	ProtoICMP
	ProtoHTTP
	ProtoTLS
	ProtoDNS
	ProtoSSH
	ProtoSMTP
	ProtoFTP
	ProtoSMB
)

// Buffer is where a payload match looks: the packet's payload (or, for
// TCP, the reassembled stream) unless a sticky buffer was named before it.
type Buffer uint8

const (
	BufPayload          Buffer = iota // pkt_data: the packet payload / reassembled stream
	BufHTTPURI                        // http.uri (normalized: percent-decoded, path collapsed)
	BufHTTPURIRaw                     // http.uri.raw
	BufHTTPMethod                     // http.method
	BufHTTPHost                       // http.host (lowercased, without port)
	BufHTTPHostRaw                    // http.host.raw
	BufHTTPUserAgent                  // http.user_agent
	BufHTTPHeader                     // http.header: request (or response) headers, "Name: value\r\n" each, without cookie
	BufHTTPHeaderRaw                  // http.header.raw
	BufHTTPHeaderNames                // http.header_names: "\r\nName1\r\nName2\r\n\r\n"
	BufHTTPCookie                     // http.cookie
	BufHTTPContentType                // http.content_type
	BufHTTPReferer                    // http.referer
	BufHTTPRequestLine                // http.request_line
	BufHTTPRequestBody                // http.request_body (client_body)
	BufHTTPStatCode                   // http.stat_code
	BufHTTPStatMsg                    // http.stat_msg
	BufHTTPResponseLine               // http.response_line
	BufHTTPResponseBody               // http.response_body, file_data/file.data on HTTP
	BufHTTPProtocol                   // http.protocol
	BufHTTPStart                      // http.start: request/response line + headers
	BufHTTPAccept                     // http.accept
	BufHTTPServer                     // http.server
	BufHTTPLocation                   // http.location
	BufHTTPContentLen                 // http.content_len
	BufHTTPConnection                 // http.connection
	BufTLSSNI                         // tls.sni
	BufTLSCertSubject                 // tls.cert_subject
	BufTLSCertIssuer                  // tls.cert_issuer
	BufJA3Hash                        // ja3.hash
	BufDNSQuery                       // dns.query
	BufSSHSoftware                    // ssh.software (either side's software version)
	BufSSHProto                       // ssh.proto
	BufTLSCerts                       // tls.certs: one certificate of the server's chain, DER (a multi-buffer: each certificate inspected on its own)
	BufHTTPAcceptEnc                  // http.accept_enc: the request's Accept-Encoding value
	BufHTTPAcceptLang                 // http.accept_lang: the request's Accept-Language value
	BufJA3SHash                       // ja3s.hash: md5 of the ServerHello's JA3S string, 32 lower-case hex digits
	BufTLSCertSerial                  // tls.cert_serial: the server certificate's serial, "0A:E1:..." (upper-case hex bytes)
	BufJA3String                      // ja3.string: the ClientHello's JA3 string ("771,4865-...,0-23-...,29-23,0")
	NumBuffers
)

// Rule is one signature.
type Rule struct {
	Action Action
	// Proto is the header's protocol, except that a transport rule (ip,
	// tcp, udp) whose options name an application buffer or tls.version
	// is for that application protocol, as in Suricata.
	Proto Proto
	// Src, Dst and the port sets are resolved against the variables the
	// rule was read with. Bidirectional is the "<>" direction.
	Src, Dst           *AddrSet
	SrcPorts, DstPorts *PortSet
	Bidirectional      bool

	GID, SID, Rev uint32
	Msg           string
	Classtype     string
	// Priority is the rule's priority option, else its classtype's
	// default, else 3. It is Suricata's alert severity: 1 is the worst.
	Priority   int
	Metadata   map[string][]string // keys lowercased; values as written, in order
	References []Reference

	Flow     Flow
	Flowbits []Flowbit
	Dsize    *IntMatch
	// Threshold is threshold: or detection_filter: (DetectionFilter set).
	Threshold *Threshold
	Noalert   bool // flowbits:noalert or noalert;

	// TLSVersion is the tls.version keyword's version as on the wire
	// (0x0303 for 1.2); 0 when the rule has none.
	TLSVersion uint16
	// IType and ICode are the itype and icode keywords (ICMP type and
	// code); nil when absent.
	IType, ICode *IntMatch
	// TCPFlags is the flags keyword; nil when absent.
	TCPFlags *TCPFlags

	// Matches are the payload and buffer conditions in rule order. Each
	// carries its buffer; relative modifiers refer to the previous match
	// of the same buffer.
	Matches []Match

	// Raw is the rule's text as read (one line, continuation lines
	// joined); File and Line say where it came from.
	Raw  string
	File string
	Line int
}

// Reference is one reference option: system and id ("cve", "2021-44228").
type Reference struct {
	System, ID string
}

// Flow is the flow option.
type Flow struct {
	ToServer, ToClient bool // to_server/from_client, to_client/from_server
	Established        bool
	NotEstablished     bool
	Stateless          bool
	OnlyStream         bool // only_stream
	NoStream           bool // no_stream
}

// FlowbitCmd is a flowbits operation.
type FlowbitCmd uint8

const (
	FlowbitSet FlowbitCmd = iota + 1
	FlowbitIsSet
	FlowbitIsNotSet
	FlowbitUnset
	FlowbitToggle
)

// Flowbit is one flowbits option. Names holds one name, or several for
// "a|b" (isset: any of them; set/unset: each) .
type Flowbit struct {
	Cmd   FlowbitCmd
	Names []string
	// And is "a&b": isset/isnotset hold only when they hold for every
	// name (without it, several names are "a|b": any of them).
	And bool
}

// TCPFlags is the flags keyword: the packet's flags, with the bits in
// Ignore cleared, compared with Flags by Mode.
type TCPFlags struct {
	Flags, Ignore uint8 // FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80
	Mode          FlagsMode
}

// FlagsMode is how flags compares.
type FlagsMode uint8

const (
	FlagsExact FlagsMode = iota // exactly Flags
	FlagsAll                    // "+": all of Flags, others may be set
	FlagsAny                    // "*": any of Flags
	FlagsNot                    // "!": none of Flags
)

// Cmp is a comparison of dsize, bsize, urilen, byte_test.
type Cmp uint8

const (
	CmpEq Cmp = iota + 1
	CmpNe
	CmpLt
	CmpLe
	CmpGt
	CmpGe
	CmpRange // Min < x < Max (Suricata's "min<>max")
	CmpAnd   // byte_test "&": x & Value != 0
	CmpXor   // byte_test "^": x ^ Value != 0
)

// IntMatch compares an integer: Value for the unary forms, Min and Max
// for CmpRange.
type IntMatch struct {
	Cmp             Cmp
	Value, Min, Max uint64
}

// Track says whose events a threshold counts.
type Track uint8

const (
	TrackBySrc Track = iota + 1
	TrackByDst
	TrackByRule
	TrackByBoth
)

// ThresholdType is threshold's type.
type ThresholdType uint8

const (
	ThresholdLimit     ThresholdType = iota + 1 // alert at most Count times per Seconds
	ThresholdThreshold                          // alert every Count-th time within Seconds
	ThresholdBoth                               // alert once per Seconds after Count
)

// Threshold is threshold: or, with DetectionFilter, detection_filter:
// (the rule matches only once more than Count matches came within Seconds).
type Threshold struct {
	DetectionFilter bool
	Type            ThresholdType
	Track           Track
	Count           int
	Seconds         int
}

// MatchKind is what a Match tests.
type MatchKind uint8

const (
	MatchContent MatchKind = iota + 1
	MatchPCRE
	MatchByteTest
	MatchByteJump
	MatchIsDataAt
	MatchBsize  // bsize: length of the buffer (Int)
	MatchUrilen // urilen: length of http.uri (Int; Buffer is BufHTTPURI)
)

// Endian of byte_test/byte_jump.
type Endian uint8

const (
	BigEndian Endian = iota
	LittleEndian
)

// Match is one payload/buffer condition.
type Match struct {
	Kind   MatchKind
	Buffer Buffer

	// Content: Pattern holds the bytes (hex |..| decoded). Depth, Offset,
	// Distance, Within apply when their Has* flag is set (Distance may be
	// negative). StartsWith/EndsWith anchor the pattern to the buffer.
	Pattern                     []byte
	Nocase                      bool
	Negated                     bool // also for pcre and isdataat
	FastPattern                 bool
	Offset, Depth               int
	Distance, Within            int
	HasOffset, HasDepth         bool
	HasDistance, HasWithin      bool
	StartsWith, EndsWith        bool
	FastPatternOnly             bool
	FastPatternOfs, FastPattLen int // fast_pattern:ofs,len (0,0 = whole)

	// PCRE: Regexp is the expression in RE2 syntax, flags applied
	// ("(?is)..." prefix); Relative is the R flag.
	Regexp   string
	Relative bool // pcre R; byte_test/byte_jump/isdataat "relative"

	// byte_test / byte_jump: Bytes to read at Offset (relative or not),
	// as a number (String with Base 8/10/16) or binary (Endian), masked
	// with Bitmask when non-zero. byte_test compares with Int; byte_jump
	// moves the cursor by the value times Multiplier plus PostOffset
	// (FromBeginning: from the buffer's start; Align: to 4 bytes).
	Bytes         int
	ByteOffset    int
	String        bool
	Base          int
	Endian        Endian
	Bitmask       uint64
	Multiplier    int
	PostOffset    int
	FromBeginning bool
	Align         bool
	// Int is byte_test's comparison, isdataat's position (Value), bsize
	// and urilen.
	Int IntMatch

	// Latin1 says the PCRE Regexp names bytes above 0x7f, as the runes
	// \x{80}-\x{ff}: match it against the buffer read one byte a rune
	// (e.g. regexp.MatchReader over a RuneReader yielding rune(b), size
	// 1), not as UTF-8.
	Latin1 bool
	// DotPrefix is the dotprefix transform: the buffer is inspected with
	// a "." before it (so ".example.com" matches the name example.com).
	DotPrefix bool
}

// AddrSet is a resolved address specification: the address is in it when
// it is in one of Include (or Include is empty: any) and in none of
// Exclude.
type AddrSet struct {
	Include []netip.Prefix
	Exclude []netip.Prefix
	Any     bool
}

// PortSet is a resolved port specification, inclusive ranges.
type PortSet struct {
	Include []PortRange
	Exclude []PortRange
	Any     bool
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// Problem is a rule that did not load, or a line that is no rule.
type Problem struct {
	File   string
	Line   int
	SID    uint32 // 0 when the sid could not be read
	Reason string
	// Keyword names the unsupported keyword when that is the reason
	// (for "which keywords block the rest" counts).
	Keyword string
}
