package rules

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// tcpRule wraps options in a plain TCP rule with sid 1.
func tcpRule(opts string) string { return `alert tcp any any -> any any (` + opts + ` sid:1;)` }

func httpRule(opts string) string { return `alert http any any -> any any (` + opts + ` sid:1;)` }

func TestParseHeader(t *testing.T) {
	tests := []struct {
		text   string
		action Action
		proto  Proto
		bidir  bool
	}{
		{`alert tcp any any -> any any (sid:1;)`, ActionAlert, ProtoTCP, false},
		{`drop udp any any <> any any (sid:1;)`, ActionDrop, ProtoUDP, true},
		{`reject ip any any -> any any (sid:1;)`, ActionReject, ProtoIP, false},
		{`rejectsrc tcp any any -> any any (sid:1;)`, ActionReject, ProtoTCP, false},
		{`rejectdst tcp any any -> any any (sid:1;)`, ActionReject, ProtoTCP, false},
		{`rejectboth tcp any any -> any any (sid:1;)`, ActionReject, ProtoTCP, false},
		{`pass icmp any any -> any any (sid:1;)`, ActionPass, ProtoICMP, false},
		{`alert tcp-pkt any any -> any any (sid:1;)`, ActionAlert, ProtoTCP, false},
		{`alert tcp-stream any any -> any any (sid:1;)`, ActionAlert, ProtoTCP, false},
		{`alert http any any -> any any (sid:1;)`, ActionAlert, ProtoHTTP, false},
		{`alert tls any any -> any any (sid:1;)`, ActionAlert, ProtoTLS, false},
		{`alert dns any any -> any any (sid:1;)`, ActionAlert, ProtoDNS, false},
		{`alert ssh any any -> any any (sid:1;)`, ActionAlert, ProtoSSH, false},
		{`alert smtp any any -> any any (sid:1;)`, ActionAlert, ProtoSMTP, false},
		{`alert ftp any any -> any any (sid:1;)`, ActionAlert, ProtoFTP, false},
		{`alert smb any any -> any any (sid:1;)`, ActionAlert, ProtoSMB, false},
		{"alert\ttcp [10.0.0.1, 10.0.0.2]  any ->\t$HOME_NET [80, 443] (sid:1;)", ActionAlert, ProtoTCP, false},
	}
	for _, tt := range tests {
		r, err := Parse(tt.text, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.text, err)
			continue
		}
		if r.Action != tt.action || r.Proto != tt.proto || r.Bidirectional != tt.bidir {
			t.Errorf("%s: action %v proto %v bidir %v", tt.text, r.Action, r.Proto, r.Bidirectional)
		}
		if r.GID != 1 || r.SID != 1 || r.Priority != 3 || r.Raw != tt.text {
			t.Errorf("%s: gid %d sid %d priority %d raw %q", tt.text, r.GID, r.SID, r.Priority, r.Raw)
		}
	}
	r, err := Parse("alert\ttcp [10.0.0.1, 10.0.0.2]  any ->\t$HOME_NET [80, 443] (sid:1;)", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Src.Contains(netip.MustParseAddr("10.0.0.2")) || r.Src.Contains(netip.MustParseAddr("10.0.0.3")) ||
		!r.DstPorts.Contains(443) || r.DstPorts.Contains(22) || !r.SrcPorts.Any {
		t.Errorf("header sets: %+v %+v %+v", r.Src, r.DstPorts, r.SrcPorts)
	}
}

// TestParseOptions covers every keyword the parser takes.
func TestParseOptions(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(*Rule) bool
	}{
		{"msg", tcpRule(`msg:"a \"quoted\"\; msg\\ here";`), func(r *Rule) bool { return r.Msg == `a "quoted"; msg\ here` }},
		{"sid rev gid", `alert tcp any any -> any any (sid:2034647; rev:3; gid:7;)`, func(r *Rule) bool {
			return r.SID == 2034647 && r.Rev == 3 && r.GID == 7
		}},
		{"classtype priority", tcpRule(`classtype:trojan-activity;`), func(r *Rule) bool { return r.Classtype == "trojan-activity" && r.Priority == 1 }},
		{"classtype unknown", tcpRule(`classtype:made-up;`), func(r *Rule) bool { return r.Classtype == "made-up" && r.Priority == 3 }},
		{"priority wins", tcpRule(`priority:4; classtype:attempted-admin;`), func(r *Rule) bool { return r.Priority == 4 }},
		{"metadata", tcpRule(`metadata:Attack_Target Server, deployment Perimeter, deployment Internal, flag; metadata:cve CVE_2021_44228;`), func(r *Rule) bool {
			return slices.Equal(r.Metadata["attack_target"], []string{"Server"}) &&
				slices.Equal(r.Metadata["deployment"], []string{"Perimeter", "Internal"}) &&
				slices.Equal(r.Metadata["flag"], []string{""}) &&
				slices.Equal(r.Metadata["cve"], []string{"CVE_2021_44228"})
		}},
		{"reference", tcpRule(`reference:CVE,2021-44228; reference:url,example.com/a,b;`), func(r *Rule) bool {
			return slices.Equal(r.References, []Reference{{"cve", "2021-44228"}, {"url", "example.com/a,b"}})
		}},
		{"content hex escapes", tcpRule(`content:"|24 7b|jndi|3a|ldap\"\;\\\:|0d0A|";`), func(r *Rule) bool {
			m := r.Matches[0]
			return m.Kind == MatchContent && string(m.Pattern) == "${jndi:ldap\";\\:\r\n" && m.Buffer == BufPayload
		}},
		{"content negated", tcpRule(`content:!"evil";`), func(r *Rule) bool { return r.Matches[0].Negated }},
		{"content negated inside", tcpRule(`content: ! "evil";`), func(r *Rule) bool { return r.Matches[0].Negated }},
		{"modifiers", tcpRule(`content:"abc"; nocase; offset:2; depth:10; fast_pattern; content:"def"; distance:-2; within:9;`), func(r *Rule) bool {
			a, b := r.Matches[0], r.Matches[1]
			return a.Nocase && a.HasOffset && a.Offset == 2 && a.HasDepth && a.Depth == 10 && a.FastPattern &&
				b.HasDistance && b.Distance == -2 && b.HasWithin && b.Within == 9 && !b.Nocase
		}},
		{"fast_pattern only", tcpRule(`content:"abcd"; fast_pattern:only;`), func(r *Rule) bool {
			return r.Matches[0].FastPattern && r.Matches[0].FastPatternOnly
		}},
		{"fast_pattern part", tcpRule(`content:"abcdef"; fast_pattern:1,3;`), func(r *Rule) bool {
			m := r.Matches[0]
			return m.FastPattern && m.FastPatternOfs == 1 && m.FastPattLen == 3
		}},
		{"startswith endswith", tcpRule(`content:"GET"; startswith; content:"x"; endswith;`), func(r *Rule) bool {
			return r.Matches[0].StartsWith && r.Matches[1].EndsWith
		}},
		{"rawbytes target prefilter ignored", tcpRule(`content:"a"; rawbytes; target:dest_ip; prefilter;`), func(r *Rule) bool { return len(r.Matches) == 1 }},
		{"pcre", tcpRule(`pcre:"/^ab+c$/smiR";`), func(r *Rule) bool {
			m := r.Matches[0]
			return m.Kind == MatchPCRE && m.Regexp == `(?smi)^ab+c$` && m.Relative && m.Buffer == BufPayload
		}},
		{"pcre negated", tcpRule(`pcre:!"/x/";`), func(r *Rule) bool { return r.Matches[0].Negated }},
		{"pcre buffer flag", tcpRule(`pcre:"/\/admin/U";`), func(r *Rule) bool {
			return r.Matches[0].Buffer == BufHTTPURI && r.Proto == ProtoHTTP
		}},
		{"pcre in sticky buffer", httpRule(`http.user_agent; pcre:"/curl/i";`), func(r *Rule) bool { return r.Matches[0].Buffer == BufHTTPUserAgent }},
		{"flow", tcpRule(`flow:established,to_server;`), func(r *Rule) bool { return r.Flow == Flow{ToServer: true, Established: true} }},
		{"flow from_server", tcpRule(`flow:from_server,not_established,only_stream;`), func(r *Rule) bool {
			return r.Flow == Flow{ToClient: true, NotEstablished: true, OnlyStream: true}
		}},
		{"flow stateless no_stream from_client", tcpRule(`flow:stateless,from_client,no_stream;`), func(r *Rule) bool {
			return r.Flow == Flow{ToServer: true, Stateless: true, NoStream: true}
		}},
		{"flowbits", tcpRule(`flowbits:set,ET.a; flowbits:isset,b|c; flowbits:isnotset,d&e; flowbits:unset,f; flowbits:toggle,g; flowbits:noalert;`), func(r *Rule) bool {
			return reflect.DeepEqual(r.Flowbits, []Flowbit{
				{FlowbitSet, []string{"ET.a"}, false}, {FlowbitIsSet, []string{"b", "c"}, false},
				{FlowbitIsNotSet, []string{"d", "e"}, true}, {FlowbitUnset, []string{"f"}, false}, {FlowbitToggle, []string{"g"}, false},
			}) && r.Noalert
		}},
		{"noalert", tcpRule(`noalert;`), func(r *Rule) bool { return r.Noalert }},
		{"dsize eq", tcpRule(`dsize:10;`), func(r *Rule) bool { return *r.Dsize == IntMatch{Cmp: CmpEq, Value: 10} }},
		{"dsize lt", tcpRule(`dsize:<10;`), func(r *Rule) bool { return *r.Dsize == IntMatch{Cmp: CmpLt, Value: 10} }},
		{"dsize gt", tcpRule(`dsize:>10;`), func(r *Rule) bool { return *r.Dsize == IntMatch{Cmp: CmpGt, Value: 10} }},
		{"dsize le", tcpRule(`dsize:<=10;`), func(r *Rule) bool { return *r.Dsize == IntMatch{Cmp: CmpLe, Value: 10} }},
		{"dsize ge", tcpRule(`dsize:>=10;`), func(r *Rule) bool { return *r.Dsize == IntMatch{Cmp: CmpGe, Value: 10} }},
		{"dsize ne", tcpRule(`dsize:!10;`), func(r *Rule) bool { return *r.Dsize == IntMatch{Cmp: CmpNe, Value: 10} }},
		{"dsize range", tcpRule(`dsize:10<>20;`), func(r *Rule) bool { return *r.Dsize == IntMatch{Cmp: CmpRange, Min: 10, Max: 20} }},
		{"byte_test", tcpRule(`content:"a"; byte_test:4,>,1000,2,relative,little;`), func(r *Rule) bool {
			m := r.Matches[1]
			return m.Kind == MatchByteTest && m.Bytes == 4 && m.Int == IntMatch{Cmp: CmpGt, Value: 1000} &&
				m.ByteOffset == 2 && m.Relative && m.Endian == LittleEndian && !m.String
		}},
		{"byte_test string hex bitmask", tcpRule(`byte_test:2,=,0x1f,-3,string,hex,bitmask 0xff0;`), func(r *Rule) bool {
			m := r.Matches[0]
			return m.String && m.Base == 16 && m.Int.Value == 0x1f && m.ByteOffset == -3 && m.Bitmask == 0xff0
		}},
		{"byte_test string dec oct", tcpRule(`byte_test:3,<,100,0,string,oct; byte_test:3,<,100,0,string;`), func(r *Rule) bool {
			return r.Matches[0].Base == 8 && r.Matches[1].Base == 10
		}},
		{"byte_test negated", tcpRule(`byte_test:1,!<,5,0; byte_test:1,!&,3,0; byte_test:1,!=,3,0; byte_test:1,!,3,0; byte_test:1,^,3,0; byte_test:1,<=,3,0; byte_test:1,>=,3,0;`), func(r *Rule) bool {
			m := r.Matches
			return m[0].Int.Cmp == CmpGe && !m[0].Negated && m[1].Int.Cmp == CmpAnd && m[1].Negated &&
				m[2].Int.Cmp == CmpNe && m[3].Int.Cmp == CmpNe && m[4].Int.Cmp == CmpXor &&
				m[5].Int.Cmp == CmpLe && m[6].Int.Cmp == CmpGe
		}},
		{"byte_jump", tcpRule(`byte_jump:4,0,relative,little,align,multiplier 2,post_offset -4,from_beginning,bitmask 0x7f;`), func(r *Rule) bool {
			m := r.Matches[0]
			return m.Kind == MatchByteJump && m.Bytes == 4 && m.Relative && m.Endian == LittleEndian && m.Align &&
				m.Multiplier == 2 && m.PostOffset == -4 && m.FromBeginning && m.Bitmask == 0x7f
		}},
		{"byte_jump string", tcpRule(`byte_jump:2,1,string,dec,big;`), func(r *Rule) bool {
			m := r.Matches[0]
			return m.String && m.Base == 10 && m.Multiplier == 1 && m.ByteOffset == 1
		}},
		{"isdataat", tcpRule(`content:"a"; isdataat:!10,relative,rawbytes; isdataat:5;`), func(r *Rule) bool {
			a, b := r.Matches[1], r.Matches[2]
			return a.Kind == MatchIsDataAt && a.Negated && a.Relative && a.Int.Value == 10 && !b.Negated && b.Int.Value == 5
		}},
		{"threshold", tcpRule(`threshold: type limit, track by_src, count 1, seconds 60;`), func(r *Rule) bool {
			return *r.Threshold == Threshold{Type: ThresholdLimit, Track: TrackBySrc, Count: 1, Seconds: 60}
		}},
		{"threshold both by_both", tcpRule(`threshold:type both,track by_both,count 5,seconds 10;`), func(r *Rule) bool {
			return *r.Threshold == Threshold{Type: ThresholdBoth, Track: TrackByBoth, Count: 5, Seconds: 10}
		}},
		{"threshold threshold by_rule", tcpRule(`threshold:type threshold,track by_rule,count 5,seconds 10;`), func(r *Rule) bool {
			return r.Threshold.Type == ThresholdThreshold && r.Threshold.Track == TrackByRule
		}},
		{"detection_filter", tcpRule(`detection_filter:track by_dst, count 10, seconds 1;`), func(r *Rule) bool {
			return *r.Threshold == Threshold{DetectionFilter: true, Track: TrackByDst, Count: 10, Seconds: 1}
		}},
		{"bsize", httpRule(`http.uri; bsize:<100;`), func(r *Rule) bool {
			m := r.Matches[0]
			return m.Kind == MatchBsize && m.Buffer == BufHTTPURI && m.Int == IntMatch{Cmp: CmpLt, Value: 100}
		}},
		{"urilen", httpRule(`urilen:5<>10; urilen:>3,raw;`), func(r *Rule) bool {
			a, b := r.Matches[0], r.Matches[1]
			return a.Kind == MatchUrilen && a.Buffer == BufHTTPURI && a.Int.Cmp == CmpRange && b.Buffer == BufHTTPURIRaw
		}},
		{"sticky buffers", httpRule(`http.method; content:"POST"; http.uri; content:"/a"; content:"b"; distance:0; pkt_data; content:"c";`), func(r *Rule) bool {
			m := r.Matches
			return m[0].Buffer == BufHTTPMethod && m[1].Buffer == BufHTTPURI && m[2].Buffer == BufHTTPURI && m[3].Buffer == BufPayload
		}},
		{"content before sticky stays in payload", httpRule(`content:"x"; http.host; content:"y";`), func(r *Rule) bool {
			return r.Matches[0].Buffer == BufPayload && r.Matches[1].Buffer == BufHTTPHost
		}},
		{"legacy modifiers", httpRule(`content:"GET"; http_method; content:"/x"; http_uri; nocase; content:"a=b"; http_cookie;`), func(r *Rule) bool {
			m := r.Matches
			return m[0].Buffer == BufHTTPMethod && m[1].Buffer == BufHTTPURI && m[1].Nocase && m[2].Buffer == BufHTTPCookie
		}},
		{"tcp with http buffer becomes http", tcpRule(`http.uri; content:"/x";`), func(r *Rule) bool { return r.Proto == ProtoHTTP }},
		{"udp with dns buffer becomes dns", `alert udp any any -> any 53 (dns.query; content:"evil"; sid:1;)`, func(r *Rule) bool {
			return r.Proto == ProtoDNS && r.Matches[0].Buffer == BufDNSQuery
		}},
		{"file_data", httpRule(`file_data; content:"MZ";`), func(r *Rule) bool { return r.Matches[0].Buffer == BufHTTPResponseBody }},
		{"file.data on tcp", tcpRule(`file.data; content:"MZ";`), func(r *Rule) bool {
			return r.Matches[0].Buffer == BufHTTPResponseBody && r.Proto == ProtoHTTP
		}},
		{"tls", `alert tls any any -> any any (tls.sni; content:"evil.com"; tls_cert_subject; content:"CN="; ja3.hash; content:"e7d705a3286e19ea42f587b344ee6865"; tls.version:1.2; sid:1;)`, func(r *Rule) bool {
			m := r.Matches
			return m[0].Buffer == BufTLSSNI && m[1].Buffer == BufTLSCertSubject && m[2].Buffer == BufJA3Hash && r.TLSVersion == 0x0303
		}},
		{"tls.version values", `alert tls any any -> any any (tls.version:0x0304; sid:1;)`, func(r *Rule) bool { return r.TLSVersion == 0x0304 }},
		{"tls.version on tcp", tcpRule(`tls.version:1.0;`), func(r *Rule) bool { return r.TLSVersion == 0x0301 && r.Proto == ProtoTLS }},
		{"ssh", `alert ssh any any -> any any (ssh.software; content:"libssh"; ssh.proto; content:"2.0"; sid:1;)`, func(r *Rule) bool {
			return r.Matches[0].Buffer == BufSSHSoftware && r.Matches[1].Buffer == BufSSHProto
		}},
		{"ssh.softwareversion", `alert ssh any any -> any any (ssh.softwareversion:"PuTTY"; sid:1;)`, func(r *Rule) bool {
			m := r.Matches[0]
			return m.Buffer == BufSSHSoftware && string(m.Pattern) == "PuTTY" && m.StartsWith
		}},
		{"dotprefix", `alert dns any any -> any any (dns.query; dotprefix; content:".evil.com"; endswith; bsize:>3; tls_sni; sid:1;)`, func(r *Rule) bool {
			return r.Matches[0].DotPrefix && r.Matches[1].DotPrefix
		}},
		{"http buffers", httpRule(`http.uri.raw; content:"a"; http.host.raw; content:"a"; http.header.raw; content:"a"; http.header_names; content:"a"; http.content_type; content:"a"; http.referer; content:"a"; http.request_line; content:"a"; http.request_body; content:"a"; http.stat_code; content:"2"; http.stat_msg; content:"a"; http.response_line; content:"a"; http.response_body; content:"a"; http.protocol; content:"a"; http.start; content:"a"; http.accept; content:"a"; http.server; content:"a"; http.location; content:"a"; http.content_len; content:"1"; http.connection; content:"a"; http.cookie; content:"a"; http.header; content:"a"; http.user_agent; content:"a"; http.host; content:"a"; http.method; content:"a"; http.uri; content:"a";`), func(r *Rule) bool {
			want := []Buffer{BufHTTPURIRaw, BufHTTPHostRaw, BufHTTPHeaderRaw, BufHTTPHeaderNames, BufHTTPContentType, BufHTTPReferer,
				BufHTTPRequestLine, BufHTTPRequestBody, BufHTTPStatCode, BufHTTPStatMsg, BufHTTPResponseLine, BufHTTPResponseBody,
				BufHTTPProtocol, BufHTTPStart, BufHTTPAccept, BufHTTPServer, BufHTTPLocation, BufHTTPContentLen, BufHTTPConnection,
				BufHTTPCookie, BufHTTPHeader, BufHTTPUserAgent, BufHTTPHost, BufHTTPMethod, BufHTTPURI}
			for i, b := range want {
				if r.Matches[i].Buffer != b {
					return false
				}
			}
			return len(r.Matches) == len(want)
		}},
		{"legacy http modifiers", httpRule(`content:"a"; http_raw_uri; content:"a"; http_header; content:"a"; http_raw_header; content:"a"; http_user_agent; content:"a"; http_host; content:"a"; http_raw_host; content:"a"; http_client_body; content:"a"; http_server_body; content:"2"; http_stat_code; content:"a"; http_stat_msg;`), func(r *Rule) bool {
			want := []Buffer{BufHTTPURIRaw, BufHTTPHeader, BufHTTPHeaderRaw, BufHTTPUserAgent, BufHTTPHost, BufHTTPHostRaw,
				BufHTTPRequestBody, BufHTTPResponseBody, BufHTTPStatCode, BufHTTPStatMsg}
			for i, b := range want {
				if r.Matches[i].Buffer != b {
					return false
				}
			}
			return true
		}},
		{"uricontent", httpRule(`uricontent:"/cgi-bin";`), func(r *Rule) bool { return r.Matches[0].Buffer == BufHTTPURI }},
		{"itype icode", `alert icmp any any -> any any (itype:8; icode:>0; sid:1;)`, func(r *Rule) bool {
			return *r.IType == IntMatch{Cmp: CmpEq, Value: 8} && *r.ICode == IntMatch{Cmp: CmpGt, Value: 0}
		}},
		{"itype range", `alert icmp any any -> any any (itype:3<>5; sid:1;)`, func(r *Rule) bool { return r.IType.Cmp == CmpRange }},
		{"flags", tcpRule(`flags:S,CE;`), func(r *Rule) bool { return *r.TCPFlags == TCPFlags{Flags: 0x02, Ignore: 0xc0} }},
		{"flags modes", tcpRule(`flags:+SA;`), func(r *Rule) bool { return *r.TCPFlags == TCPFlags{Flags: 0x12, Mode: FlagsAll} }},
		{"flags any", tcpRule(`flags:*FPU;`), func(r *Rule) bool { return *r.TCPFlags == TCPFlags{Flags: 0x29, Mode: FlagsAny} }},
		{"flags not zero", tcpRule(`flags:!R;`), func(r *Rule) bool { return *r.TCPFlags == TCPFlags{Flags: 0x04, Mode: FlagsNot} }},
		{"flags none", tcpRule(`flags:0;`), func(r *Rule) bool { return *r.TCPFlags == TCPFlags{} }},
		{"continuation", "alert tcp any any -> any any (msg:\"x\"; \\\n content:\"a\"; \\\n sid:1;)", func(r *Rule) bool {
			return string(r.Matches[0].Pattern) == "a" && !strings.Contains(r.Raw, "\\")
		}},
	}
	for _, tt := range tests {
		r, err := Parse(tt.text, nil)
		if err != nil {
			t.Errorf("%s: %s: %v", tt.name, tt.text, err)
			continue
		}
		if !tt.check(r) {
			t.Errorf("%s: %s: wrong rule: %+v matches %+v", tt.name, tt.text, r, r.Matches)
		}
	}
}

// TestParseErrors covers every error and every unsupported thing: each
// says what and where.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		text    string
		want    string // in the error
		keyword string
	}{
		{`alert tcp any any -> any any`, "no options", ""},
		{`alert tcp any any -> any (sid:1;)`, "header has 6 fields", ""},
		{`alert tcp any any -> any any any (sid:1;)`, "too many header fields", ""},
		{`log tcp any any -> any any (sid:1;)`, `unknown action "log"`, "action log"},
		{`alert sctp any any -> any any (sid:1;)`, `protocol "sctp" is not supported`, "protocol sctp"},
		{`alert tcp any any <- any any (sid:1;)`, `direction "<-"`, ""},
		{`alert tcp 10.0.0.300 any -> any any (sid:1;)`, `col 11: header: source: bad address "10.0.0.300"`, ""},
		{`alert tcp any 99999 -> any any (sid:1;)`, `source port: bad port`, ""},
		{`alert tcp any any -> $NOPE any (sid:1;)`, `destination: undefined variable $NOPE`, ""},
		{`alert tcp any any -> any $NOPE (sid:1;)`, `destination port: undefined variable $NOPE`, ""},
		{`alert tcp any any -> any any (sid:1;`, "not closed", ""},
		{`alert tcp any any -> any any (sid:1) x`, "not closed", ""},
		{`alert tcp any any -> any any (sid:1)`, "not terminated", ""},
		{`alert tcp any any -> any any (msg:"x";)`, "no sid", ""},
		{`alert tcp any any -> any any (sid:x;)`, `col 31: sid: "x" is not a number`, ""},
		{tcpRule(`rev:-1;`), "rev", ""},
		{tcpRule(`priority:0;`), "not a priority", ""},
		{tcpRule(`reference:nocomma;`), "want system,id", ""},
		{tcpRule(`msg:"unbalanced;`), "unbalanced quotes", ""},
		{tcpRule(`content:"";`), "empty content", ""},
		{tcpRule(`content:"|4|";`), "odd hex digit", ""},
		{tcpRule(`content:"|zz|";`), "not a hex digit", ""},
		{tcpRule(`content:"|41";`), "not closed by |", ""},
		{tcpRule(`content:"\x";`), `bad escape \x`, ""},
		{tcpRule(`content:"a"b";`), "unescaped quote", ""},
		{tcpRule(`nocase;`), "nocase: no content before it", ""},
		{tcpRule(`content:"a"; nocase:1;`), "takes no value", ""},
		{tcpRule(`content:"abc"; depth:2;`), "depth 2 is shorter than the content", ""},
		{tcpRule(`content:"abc"; within:2;`), "within 2 is shorter", ""},
		{tcpRule(`content:"a"; offset:x1;`), `uses the variable "x1"`, "byte_extract"},
		{tcpRule(`content:"a"; offset:-1;`), "negative offset", ""},
		{tcpRule(`content:"a"; depth:5; distance:1;`), "cannot mix distance", ""},
		{tcpRule(`content:"a"; within:5; offset:1;`), "cannot mix offset", ""},
		{tcpRule(`content:"a"; fast_pattern; content:"b"; fast_pattern;`), "a second fast_pattern", ""},
		{tcpRule(`content:"abc"; fast_pattern:2,5;`), "offset,length within", ""},
		{tcpRule(`content:!"abc"; fast_pattern:only;`), "negated content cannot", ""},
		{httpRule(`content:"a"; http.uri; nocase;`), "the last content is in pkt_data", ""},
		{httpRule(`http.uri; content:"a"; http_method;`), "already in http.uri", ""},
		{httpRule(`http_uri;`), "no content before it", ""},
		{httpRule(`http.uri:1;`), "takes no value", ""},
		{tcpRule(`pcre:/x/;`), "quoted", ""},
		{tcpRule(`pcre:"x";`), "want /expression/flags", ""},
		{tcpRule(`pcre:"/x/q";`), "unknown pcre flag 'q'", ""},
		{tcpRule(`pcre:"/x/UH";`), "two buffer flags", ""},
		{tcpRule(`pcre:"/a(?=b)/";`), "pcre uses lookahead (?=...), which Go's RE2 cannot match", "pcre"},
		{tcpRule(`pcre:"/a(?!b)/";`), "negative lookahead", "pcre"},
		{tcpRule(`pcre:"/(?<=a)b/";`), "lookbehind (?<=", "pcre"},
		{tcpRule(`pcre:"/(?<!a)b/";`), "negative lookbehind", "pcre"},
		{tcpRule(`pcre:"/(a)\1/";`), `backreference \1`, "pcre"},
		{tcpRule(`pcre:"/(?P<n>a)(?P=n)/";`), "named backreference", "pcre"},
		{tcpRule(`pcre:"/(?>a+)b/";`), "atomic group", "pcre"},
		{tcpRule(`pcre:"/a*+b/";`), "possessive quantifier (*+)", "pcre"},
		{tcpRule(`pcre:"/a++b/";`), "possessive quantifier (++)", "pcre"},
		{tcpRule(`pcre:"/a?+b/";`), "possessive quantifier (?+)", "pcre"},
		{tcpRule(`pcre:"/a{2}+b/";`), "possessive quantifier", "pcre"},
		{tcpRule(`pcre:"/a\Z/";`), `\Z`, "pcre"},
		{tcpRule(`pcre:"/(a(?R)?b)/";`), "recursion", "pcre"},
		{tcpRule(`pcre:"/(?(1)a|b)/";`), "conditional", "pcre"},
		{tcpRule(`pcre:"/(?x)a b/";`), "inline flag (?x)", "pcre"},
		{tcpRule(`pcre:"/(.{1,1000}a){5}/";`), "Go's RE2 rejects it", "pcre"},
		{tcpRule(`pcre:"/[a/";`), "[ without ]", ""},
		{tcpRule(`pcre:"/a)/";`), ") without (", ""},
		{tcpRule(`flow:to_server,sideways;`), `unknown flow option "sideways"`, "flow sideways"},
		{tcpRule(`flow:to_server,to_client;`), "together", ""},
		{tcpRule(`flow:established,stateless;`), "established with", ""},
		{tcpRule(`flowbits:frob,a;`), `unknown command "frob"`, ""},
		{tcpRule(`flowbits:set;`), "needs a name", ""},
		{tcpRule(`flowbits:set,a&b;`), "& only goes with isset", ""},
		{tcpRule(`flowbits:isset,a&b|c;`), "mixes & and |", ""},
		{tcpRule(`flowbits:noalert,x;`), "takes no name", ""},
		{tcpRule(`dsize:abc;`), "want N, <N", ""},
		{tcpRule(`dsize:20<>10;`), "min must be below max", ""},
		{tcpRule(`byte_test:4,>,1;`), "want bytes,operator,value,offset", ""},
		{tcpRule(`byte_test:4,~,1,0;`), `operator "~"`, ""},
		{tcpRule(`byte_test:9,>,1,0;`), "a binary number is 1-8 bytes", ""},
		{tcpRule(`byte_test:0,>,1,0,string,dec;`), "a string number is 1-23 bytes", "byte_test 0 bytes"},
		{tcpRule(`byte_test:24,>,1,0,string,dec;`), "a string number is 1-23 bytes", ""},
		{tcpRule(`byte_jump:0,0;`), "a binary number is 1-8 bytes", ""},
		{tcpRule(`byte_test:4,>,1,0,hex;`), "need string", ""},
		{tcpRule(`byte_test:4,>,val,0;`), `value is the variable "val"`, "byte_extract"},
		{tcpRule(`byte_test:4,>,1,0,dce;`), "dce", "byte_test dce"},
		{tcpRule(`byte_test:4,>,1,0,sideways;`), `unknown setting "sideways"`, ""},
		{tcpRule(`byte_test:4,>,1,0,bitmask 0;`), "bitmask", ""},
		{tcpRule(`byte_jump:4;`), "want bytes,offset", ""},
		{tcpRule(`byte_jump:4,0,from_end;`), "from_end", "byte_jump from_end"},
		{tcpRule(`byte_jump:4,0,multiplier 0;`), "multiplier", ""},
		{tcpRule(`byte_jump:4,0,post_offset x;`), "post_offset", ""},
		{tcpRule(`isdataat:x;`), "byte_extract", "byte_extract"},
		{tcpRule(`isdataat:1,sideways;`), "unknown setting", ""},
		{tcpRule(`threshold:type limit, track by_src, count 1;`), "no seconds", ""},
		{tcpRule(`threshold:track by_src, count 1, seconds 1;`), "no type", ""},
		{tcpRule(`threshold:type limit, count 1, seconds 1;`), "no track", ""},
		{tcpRule(`threshold:type limit, track by_src, seconds 1;`), "no count", ""},
		{tcpRule(`threshold:type sometimes, track by_src, count 1, seconds 1;`), `type "sometimes"`, ""},
		{tcpRule(`threshold:type limit, track by_moon, count 1, seconds 1;`), `track "by_moon"`, ""},
		{tcpRule(`threshold:type limit, track by_src, count 0, seconds 1;`), "not a positive number", ""},
		{tcpRule(`threshold:type limit, track by_src, count 1, seconds 1, colour red;`), "unknown setting", ""},
		{tcpRule(`detection_filter:type limit, track by_src, count 1, seconds 1;`), "has no type", ""},
		{tcpRule(`threshold:type limit,track by_src,count 1,seconds 1; detection_filter:track by_src,count 1,seconds 1;`), "only one threshold", ""},
		{tcpRule(`bsize:10;`), "needs a sticky buffer", ""},
		{httpRule(`urilen:1,cooked;`), "want norm or raw", ""},
		{`alert smtp any any -> any any (file_data; content:"x"; sid:1;)`, "file_data on smtp rules is not supported", "file_data"},
		{tcpRule(`tls.version:2.0;`), "want 1.0, 1.1, 1.2, 1.3", ""},
		{tcpRule(`itype:300;`), "0-255", ""},
		{tcpRule(`flags:SX;`), "unknown flag 'X'", ""},
		{tcpRule(`flags:S,Q;`), "ignore mask", ""},
		{tcpRule(`dotprefix;`), "needs a sticky buffer", ""},
		{`alert dns any any -> any any (dns.query; content:"a"; dotprefix; sid:1;)`, "right after its sticky buffer", ""},
		{`alert dns any any -> any any (http.uri; content:"a"; sid:1;)`, "http.uri does not apply to dns rules", ""},
		{`alert udp any any -> any any (http.uri; content:"a"; sid:1;)`, "needs a TCP protocol", ""},
		{tcpRule(`http.uri; content:"a"; tls.sni; content:"b";`), "belong to different protocols", ""},
		{tcpRule(`xbits:set,a,track ip_src;`), "xbits", "xbits"},
		{tcpRule(`tag:session,5,packets;`), "tag", "tag"},
		{tcpRule(`tls.cert_fingerprint; content:"a";`), `unsupported keyword "tls.cert_fingerprint"`, "tls.cert_fingerprint"},
		{tcpRule(`stream_size:server,>,100;`), "stream_size", "stream_size"},
		{tcpRule(`frobnicate;`), `unsupported keyword "frobnicate"`, "frobnicate"},
		{tcpRule(`;`), "empty option", ""},
	}
	for _, tt := range tests {
		_, err := Parse(tt.text, nil)
		if err == nil {
			t.Errorf("%s: no error, want %q", tt.text, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q, want %q", tt.text, err, tt.want)
		}
		e, ok := err.(*Error)
		if !ok {
			t.Errorf("%s: error %T, want *Error", tt.text, err)
			continue
		}
		if e.Keyword != tt.keyword {
			t.Errorf("%s: keyword %q, want %q", tt.text, e.Keyword, tt.keyword)
		}
		if strings.Contains(tt.text, "sid:1;") && e.SID != 1 {
			t.Errorf("%s: sid %d, want 1", tt.text, e.SID)
		}
	}
}
