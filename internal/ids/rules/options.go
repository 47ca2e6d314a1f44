package rules

import (
	"fmt"
	"strconv"
	"strings"
)

var protoNames = [...]string{ProtoIP: "ip", ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMP: "icmp", ProtoHTTP: "http",
	ProtoTLS: "tls", ProtoDNS: "dns", ProtoSSH: "ssh", ProtoSMTP: "smtp", ProtoFTP: "ftp", ProtoSMB: "smb"}

// String returns the protocol as a rule header writes it.
func (p Proto) String() string {
	if int(p) < len(protoNames) && protoNames[p] != "" {
		return protoNames[p]
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// bufferProto is the application protocol a buffer belongs to.
func bufferProto(b Buffer) Proto {
	switch {
	case b == BufPayload:
		return 0
	case b <= BufHTTPConnection, b == BufHTTPAcceptEnc, b == BufHTTPAcceptLang:
		return ProtoHTTP
	case b <= BufJA3Hash, b == BufTLSCerts, b == BufJA3SHash, b == BufTLSCertSerial, b == BufJA3String:
		return ProtoTLS
	case b == BufDNSQuery:
		return ProtoDNS
	default:
		return ProtoSSH
	}
}

// bufferNames are the buffers' sticky-buffer keywords.
var bufferNames = [NumBuffers]string{
	BufPayload: "pkt_data", BufHTTPURI: "http.uri", BufHTTPURIRaw: "http.uri.raw", BufHTTPMethod: "http.method",
	BufHTTPHost: "http.host", BufHTTPHostRaw: "http.host.raw", BufHTTPUserAgent: "http.user_agent",
	BufHTTPHeader: "http.header", BufHTTPHeaderRaw: "http.header.raw", BufHTTPHeaderNames: "http.header_names",
	BufHTTPCookie: "http.cookie", BufHTTPContentType: "http.content_type", BufHTTPReferer: "http.referer",
	BufHTTPRequestLine: "http.request_line", BufHTTPRequestBody: "http.request_body", BufHTTPStatCode: "http.stat_code",
	BufHTTPStatMsg: "http.stat_msg", BufHTTPResponseLine: "http.response_line", BufHTTPResponseBody: "http.response_body",
	BufHTTPProtocol: "http.protocol", BufHTTPStart: "http.start", BufHTTPAccept: "http.accept", BufHTTPServer: "http.server",
	BufHTTPLocation: "http.location", BufHTTPContentLen: "http.content_len", BufHTTPConnection: "http.connection",
	BufTLSSNI: "tls.sni", BufTLSCertSubject: "tls.cert_subject", BufTLSCertIssuer: "tls.cert_issuer",
	BufJA3Hash: "ja3.hash", BufDNSQuery: "dns.query", BufSSHSoftware: "ssh.software", BufSSHProto: "ssh.proto",
	BufTLSCerts: "tls.certs", BufHTTPAcceptEnc: "http.accept_enc", BufHTTPAcceptLang: "http.accept_lang",
	BufJA3SHash: "ja3s.hash", BufTLSCertSerial: "tls.cert_serial", BufJA3String: "ja3.string",
}

// String returns the buffer's sticky-buffer keyword.
func (b Buffer) String() string {
	if b < NumBuffers {
		return bufferNames[b]
	}
	return fmt.Sprintf("buffer(%d)", uint8(b))
}

// stickyBuffers maps the sticky-buffer keywords, current and older
// spellings, to their buffers.
var stickyBuffers = func() map[string]Buffer {
	m := map[string]Buffer{}
	for b, name := range bufferNames {
		m[name] = Buffer(b)
	}
	for name, b := range map[string]Buffer{
		"http_request_line": BufHTTPRequestLine, "http_response_line": BufHTTPResponseLine,
		"http_header_names": BufHTTPHeaderNames, "http_accept": BufHTTPAccept, "http_referer": BufHTTPReferer,
		"http_content_type": BufHTTPContentType, "http_content_len": BufHTTPContentLen,
		"http_connection": BufHTTPConnection, "http_protocol": BufHTTPProtocol, "http_start": BufHTTPStart,
		"http.uri.normalized": BufHTTPURI, "http.request_header": BufHTTPHeader,
		"tls_sni": BufTLSSNI, "tls_cert_subject": BufTLSCertSubject, "tls_cert_issuer": BufTLSCertIssuer,
		"ja3_hash": BufJA3Hash, "dns_query": BufDNSQuery, "ssh_software": BufSSHSoftware, "ssh_proto": BufSSHProto,
		"http_accept_enc": BufHTTPAcceptEnc, "http_accept_lang": BufHTTPAcceptLang, "tls_cert_serial": BufTLSCertSerial,
		"ja3_string": BufJA3String, "ja3s_hash": BufJA3SHash,
	} {
		m[name] = b
	}
	return m
}()

// legacyModifiers are the older content modifiers that move the content
// before them into a buffer.
var legacyModifiers = map[string]Buffer{
	"http_uri": BufHTTPURI, "http_raw_uri": BufHTTPURIRaw, "http_method": BufHTTPMethod,
	"http_header": BufHTTPHeader, "http_raw_header": BufHTTPHeaderRaw, "http_cookie": BufHTTPCookie,
	"http_user_agent": BufHTTPUserAgent, "http_host": BufHTTPHost, "http_raw_host": BufHTTPHostRaw,
	"http_client_body": BufHTTPRequestBody, "http_server_body": BufHTTPResponseBody,
	"http_stat_code": BufHTTPStatCode, "http_stat_msg": BufHTTPStatMsg,
}

// unsupportedWhy explains the unsupported keywords rule writers meet most.
var unsupportedWhy = map[string]string{
	"xbits":         "xbits (bits shared across flows by host or ip pair) are not supported",
	"flowint":       "flowint (integer flow variables) is not supported",
	"byte_extract":  "byte_extract (values carried between options) is not supported",
	"byte_math":     "byte_math is not supported",
	"base64_decode": "base64_decode is not supported",
	"base64_data":   "base64_data is not supported",
	"tag":           "tag (logging the packets after an alert) is not supported",
	"stream_size":   "stream_size is not supported",
	"lua":           "lua scripts are not supported",
	"luajit":        "lua scripts are not supported",
	"asn1":          "asn1 is not supported",
}

func (p *parser) option(name, value string, hasValue bool) *Error {
	r := p.r
	if b, ok := stickyBuffers[name]; ok {
		if hasValue {
			return p.errf("a sticky buffer takes no value")
		}
		p.cur, p.dotprefix = b, false
		return nil
	}
	if b, ok := legacyModifiers[name]; ok {
		if hasValue {
			return p.errf("takes no value")
		}
		if p.lastContent < 0 {
			return p.errf("no content before it")
		}
		m := &p.matches[p.lastContent]
		if m.Buffer != BufPayload && m.Buffer != b {
			return p.errf("the content before it is already in %s", m.Buffer)
		}
		m.Buffer, m.DotPrefix = b, false
		p.lastMoved = true
		return nil
	}
	switch name {
	case "msg":
		s, err := unquote(value)
		if err != nil {
			return p.errf("%v", err)
		}
		r.Msg = s
	case "sid", "rev", "gid":
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return p.errf("%q is not a number 0-%d", value, uint32(1<<32-1))
		}
		switch name {
		case "sid":
			r.SID = uint32(n)
		case "rev":
			r.Rev = uint32(n)
		default:
			r.GID = uint32(n)
		}
	case "classtype":
		if value == "" {
			return p.errf("empty classtype")
		}
		r.Classtype = value
	case "priority":
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 || n > 255 {
			return p.errf("%q is not a priority 1-255", value)
		}
		r.Priority, p.hasPriority = n, true
	case "metadata":
		return p.metadata(value)
	case "reference":
		sys, id, ok := strings.Cut(value, ",")
		sys, id = strings.TrimSpace(sys), strings.TrimSpace(id)
		if !ok || sys == "" || id == "" {
			return p.errf("%q: want system,id", value)
		}
		r.References = append(r.References, Reference{System: strings.ToLower(sys), ID: id})
	case "target", "prefilter", "rawbytes":
		// target only names which side is the victim in the alert;
		// prefilter is a hint for Suricata's own prefilter engines;
		// rawbytes is a Snort modifier Suricata ignores.
	case "content", "uricontent":
		return p.content(name, value)
	case "nocase", "depth", "offset", "distance", "within", "fast_pattern", "startswith", "endswith":
		return p.modifier(name, value, hasValue)
	case "pcre":
		return p.pcre(value)
	case "flow":
		return p.flow(value)
	case "flowbits":
		return p.flowbits(value)
	case "noalert":
		r.Noalert = true
	case "dsize":
		m, err := parseIntMatch(value, false)
		if err != nil {
			return p.errf("%v", err)
		}
		r.Dsize = &m
	case "bsize":
		m, err := parseIntMatch(value, false)
		if err != nil {
			return p.errf("%v", err)
		}
		if p.cur == BufPayload {
			return p.errf("bsize needs a sticky buffer before it")
		}
		p.add(Match{Kind: MatchBsize, Buffer: p.cur, Int: m})
	case "urilen":
		buf := BufHTTPURI
		if v, kind, ok := strings.Cut(value, ","); ok {
			value = strings.TrimSpace(v)
			switch strings.TrimSpace(kind) {
			case "norm":
			case "raw":
				buf = BufHTTPURIRaw
			default:
				return p.errf("%q: want norm or raw after the length", kind)
			}
		}
		m, err := parseIntMatch(value, false)
		if err != nil {
			return p.errf("%v", err)
		}
		p.add(Match{Kind: MatchUrilen, Buffer: buf, Int: m})
	case "isdataat":
		return p.isdataat(value)
	case "byte_test":
		return p.byteTest(value)
	case "byte_jump":
		return p.byteJump(value)
	case "threshold", "detection_filter":
		return p.thresholdOpt(name, value)
	case "file_data", "file.data":
		if hasValue {
			return p.errf("a sticky buffer takes no value")
		}
		switch r.Proto {
		case ProtoHTTP, ProtoTCP, ProtoIP:
			// Suricata's file_data on a TCP rule is HTTP or SMTP file
			// data; only HTTP bodies are inspected here.
			p.cur, p.dotprefix = BufHTTPResponseBody, false
		default:
			return p.unsupported(name, "%s on %s rules is not supported: only HTTP bodies are inspected", name, r.Proto)
		}
	case "pkt_data":
		p.cur, p.dotprefix = BufPayload, false
	case "dotprefix":
		if hasValue {
			return p.errf("takes no value")
		}
		if p.cur == BufPayload {
			return p.errf("a transform needs a sticky buffer before it")
		}
		for _, m := range p.matches {
			if m.Buffer == p.cur {
				return p.errf("a transform goes right after its sticky buffer, before the buffer's matches")
			}
		}
		p.dotprefix = true
	case "tls.version":
		v, err := parseTLSVersion(value)
		if err != nil {
			return p.errf("%v", err)
		}
		r.TLSVersion = v
	case "ssh.softwareversion", "ssh_softwareversion":
		// The software version begins with the value.
		s, err := unquote(value)
		if err != nil || s == "" {
			return p.errf("want the software version's beginning")
		}
		p.add(Match{Kind: MatchContent, Buffer: BufSSHSoftware, Pattern: []byte(s), StartsWith: true})
	case "itype", "icode":
		m, err := parseIntMatch(value, true)
		if err != nil {
			return p.errf("%v", err)
		}
		if m.Value > 255 || m.Max > 255 {
			return p.errf("%q: ICMP types and codes are 0-255", value)
		}
		if name == "itype" {
			r.IType = &m
		} else {
			r.ICode = &m
		}
	case "flags":
		f, err := parseTCPFlags(value)
		if err != nil {
			return p.errf("%v", err)
		}
		r.TCPFlags = f
	default:
		if why, ok := unsupportedWhy[name]; ok {
			return p.unsupported(name, "%s", why)
		}
		return p.unsupported(name, "unsupported keyword %q", name)
	}
	return nil
}

// unquote strips the quotes of a string value and its escapes \" \; \\.
func unquote(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	} else if strings.IndexByte(v, '"') >= 0 {
		return "", fmt.Errorf("unbalanced quotes in %q", v)
	}
	if strings.IndexByte(v, '\\') < 0 {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String(), nil
}

func (p *parser) metadata(value string) *Error {
	r := p.r
	if r.Metadata == nil {
		r.Metadata = map[string][]string{}
	}
	for item := range strings.SplitSeq(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, _ := strings.Cut(item, " ")
		k = strings.ToLower(k)
		r.Metadata[k] = append(r.Metadata[k], strings.TrimSpace(v))
	}
	return nil
}

func (p *parser) flow(value string) *Error {
	f := &p.r.Flow
	for w := range strings.SplitSeq(value, ",") {
		switch w = strings.TrimSpace(w); w {
		case "to_server", "from_client":
			f.ToServer = true
		case "to_client", "from_server":
			f.ToClient = true
		case "established":
			f.Established = true
		case "not_established":
			f.NotEstablished = true
		case "stateless":
			f.Stateless = true
		case "only_stream":
			f.OnlyStream = true
		case "no_stream":
			f.NoStream = true
		default:
			return p.unsupported("flow "+w, "unknown flow option %q", w)
		}
	}
	switch {
	case f.ToServer && f.ToClient:
		return p.errf("to_server and to_client together")
	case f.Established && (f.NotEstablished || f.Stateless):
		return p.errf("established with not_established or stateless")
	case f.OnlyStream && f.NoStream:
		return p.errf("only_stream and no_stream together")
	}
	return nil
}

func (p *parser) flowbits(value string) *Error {
	cmd, names, _ := strings.Cut(value, ",")
	cmd, names = strings.TrimSpace(cmd), strings.TrimSpace(names)
	fb := Flowbit{}
	switch cmd {
	case "noalert":
		if names != "" {
			return p.errf("noalert takes no name")
		}
		p.r.Noalert = true
		return nil
	case "set":
		fb.Cmd = FlowbitSet
	case "isset":
		fb.Cmd = FlowbitIsSet
	case "isnotset":
		fb.Cmd = FlowbitIsNotSet
	case "unset":
		fb.Cmd = FlowbitUnset
	case "toggle":
		fb.Cmd = FlowbitToggle
	default:
		return p.errf("unknown command %q: want set, isset, isnotset, unset, toggle or noalert", cmd)
	}
	if names == "" {
		return p.errf("%s needs a name", cmd)
	}
	sep := "|"
	if strings.IndexByte(names, '&') >= 0 {
		if strings.IndexByte(names, '|') >= 0 {
			return p.errf("%q mixes & and |", names)
		}
		if fb.Cmd != FlowbitIsSet && fb.Cmd != FlowbitIsNotSet {
			return p.errf("& only goes with isset and isnotset")
		}
		sep, fb.And = "&", true
	}
	for n := range strings.SplitSeq(names, sep) {
		n = strings.TrimSpace(n)
		if n == "" || strings.ContainsAny(n, " \t,") {
			return p.errf("bad flowbit name %q", n)
		}
		fb.Names = append(fb.Names, n)
	}
	p.r.Flowbits = append(p.r.Flowbits, fb)
	return nil
}

func (p *parser) thresholdOpt(name, value string) *Error {
	if p.threshold {
		return p.errf("only one threshold or detection_filter per rule")
	}
	p.threshold = true
	t := &Threshold{DetectionFilter: name == "detection_filter"}
	var haveCount, haveSeconds bool
	for item := range strings.SplitSeq(value, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(item), " ")
		v = strings.TrimSpace(v)
		switch k {
		case "type":
			if t.DetectionFilter {
				return p.errf("detection_filter has no type")
			}
			switch v {
			case "limit":
				t.Type = ThresholdLimit
			case "threshold":
				t.Type = ThresholdThreshold
			case "both":
				t.Type = ThresholdBoth
			default:
				return p.errf("type %q: want limit, threshold or both", v)
			}
		case "track":
			switch v {
			case "by_src":
				t.Track = TrackBySrc
			case "by_dst":
				t.Track = TrackByDst
			case "by_rule":
				t.Track = TrackByRule
			case "by_both":
				t.Track = TrackByBoth
			default:
				return p.errf("track %q: want by_src, by_dst, by_rule or by_both", v)
			}
		case "count", "seconds":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || k == "count" && n == 0 {
				return p.errf("%s %q is not a positive number", k, v)
			}
			if k == "count" {
				t.Count, haveCount = n, true
			} else {
				t.Seconds, haveSeconds = n, true
			}
		default:
			return p.errf("unknown setting %q: want type, track, count, seconds", k)
		}
	}
	switch {
	case !t.DetectionFilter && t.Type == 0:
		return p.errf("no type")
	case t.Track == 0:
		return p.errf("no track")
	case !haveCount:
		return p.errf("no count")
	case !haveSeconds:
		return p.errf("no seconds")
	}
	p.r.Threshold = t
	return nil
}

func parseTLSVersion(v string) (uint16, error) {
	switch strings.TrimSpace(v) {
	case "1.0":
		return 0x0301, nil
	case "1.1":
		return 0x0302, nil
	case "1.2":
		return 0x0303, nil
	case "1.3":
		return 0x0304, nil
	}
	if n, err := strconv.ParseUint(strings.TrimSpace(v), 0, 16); err == nil && n != 0 {
		return uint16(n), nil
	}
	return 0, fmt.Errorf("%q: want 1.0, 1.1, 1.2, 1.3 or a number like 0x0303", v)
}

// parseIntMatch reads N, =N, !N, <N, <=N, >N, >=N and N<>M (and N-M for
// itype/icode when dash is set).
func parseIntMatch(v string, dash bool) (IntMatch, error) {
	s := strings.TrimSpace(v)
	num := func(x string) (uint64, error) {
		n, err := strconv.ParseUint(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: want N, <N, >N, <=N, >=N, !N or N<>M", v)
		}
		return n, nil
	}
	if lo, hi, ok := strings.Cut(s, "<>"); ok {
		a, err := num(lo)
		if err != nil {
			return IntMatch{}, err
		}
		b, err := num(hi)
		if err != nil {
			return IntMatch{}, err
		}
		if a >= b {
			return IntMatch{}, fmt.Errorf("%q: range min must be below max", v)
		}
		return IntMatch{Cmp: CmpRange, Min: a, Max: b}, nil
	}
	if dash {
		if lo, hi, ok := strings.Cut(s, "-"); ok && lo != "" {
			a, err := num(lo)
			if err != nil {
				return IntMatch{}, err
			}
			b, err := num(hi)
			if err != nil {
				return IntMatch{}, err
			}
			if a >= b {
				return IntMatch{}, fmt.Errorf("%q: range min must be below max", v)
			}
			return IntMatch{Cmp: CmpRange, Min: a, Max: b}, nil
		}
	}
	m := IntMatch{Cmp: CmpEq}
	for _, op := range []struct {
		p string
		c Cmp
	}{{"<=", CmpLe}, {">=", CmpGe}, {"!=", CmpNe}, {"<", CmpLt}, {">", CmpGt}, {"!", CmpNe}, {"=", CmpEq}} {
		if strings.HasPrefix(s, op.p) {
			m.Cmp, s = op.c, s[len(op.p):]
			break
		}
	}
	n, err := num(s)
	if err != nil {
		return IntMatch{}, err
	}
	m.Value = n
	return m, nil
}

func parseTCPFlags(v string) (*TCPFlags, error) {
	flags, ignore, hasIgnore := strings.Cut(strings.TrimSpace(v), ",")
	f := &TCPFlags{}
	bit := func(c byte) (uint8, bool) {
		switch c {
		case 'F':
			return 0x01, true
		case 'S':
			return 0x02, true
		case 'R':
			return 0x04, true
		case 'P':
			return 0x08, true
		case 'A':
			return 0x10, true
		case 'U':
			return 0x20, true
		case 'E', '2':
			return 0x40, true
		case 'C', '1':
			return 0x80, true
		}
		return 0, false
	}
	flags = strings.TrimSpace(flags)
	if flags == "" {
		return nil, fmt.Errorf("no flags")
	}
	mode := func(c byte) (FlagsMode, bool) {
		switch c {
		case '+':
			return FlagsAll, true
		case '*':
			return FlagsAny, true
		case '!':
			return FlagsNot, true
		}
		return 0, false
	}
	if m, ok := mode(flags[0]); ok {
		f.Mode, flags = m, flags[1:]
	} else if m, ok := mode(flags[len(flags)-1]); ok {
		f.Mode, flags = m, flags[:len(flags)-1]
	}
	if flags != "0" {
		for i := 0; i < len(flags); i++ {
			b, ok := bit(flags[i])
			if !ok {
				return nil, fmt.Errorf("unknown flag %q in %q: want F S R P A U C E or 0", flags[i], v)
			}
			f.Flags |= b
		}
	}
	if hasIgnore {
		ignore = strings.TrimSpace(ignore)
		for i := 0; i < len(ignore); i++ {
			b, ok := bit(ignore[i])
			if !ok {
				return nil, fmt.Errorf("unknown flag %q in the ignore mask %q", ignore[i], ignore)
			}
			f.Ignore |= b
		}
	}
	return f, nil
}
