package rules

import (
	"strings"
	"testing"
)

// TestParseNewBuffers covers the buffers ET Open needs beyond the first
// set: each keyword (and its older spelling) selects its buffer, makes a
// transport rule a rule of the buffer's protocol, and takes the content
// modifiers after it.
func TestParseNewBuffers(t *testing.T) {
	tests := []struct {
		keyword string
		buf     Buffer
		proto   Proto
	}{
		{"tls.certs", BufTLSCerts, ProtoTLS},
		{"http.accept_enc", BufHTTPAcceptEnc, ProtoHTTP},
		{"http_accept_enc", BufHTTPAcceptEnc, ProtoHTTP},
		{"http.accept_lang", BufHTTPAcceptLang, ProtoHTTP},
		{"http_accept_lang", BufHTTPAcceptLang, ProtoHTTP},
		{"ja3s.hash", BufJA3SHash, ProtoTLS},
		{"ja3s_hash", BufJA3SHash, ProtoTLS},
		{"tls.cert_serial", BufTLSCertSerial, ProtoTLS},
		{"tls_cert_serial", BufTLSCertSerial, ProtoTLS},
		{"ja3.string", BufJA3String, ProtoTLS},
		{"ja3_string", BufJA3String, ProtoTLS},
	}
	// The buffers print as the keywords' current spelling.
	canonical := map[Buffer]string{
		BufTLSCerts: "tls.certs", BufHTTPAcceptEnc: "http.accept_enc", BufHTTPAcceptLang: "http.accept_lang",
		BufJA3SHash: "ja3s.hash", BufTLSCertSerial: "tls.cert_serial", BufJA3String: "ja3.string",
	}
	for _, tt := range tests {
		for _, header := range []string{"alert tcp", "alert " + tt.proto.String()} {
			text := header + ` any any -> any any (flow:established; ` + tt.keyword +
				`; content:"AB|3a|cd"; nocase; depth:10; content:!"x"; distance:0; bsize:>2; sid:7;)`
			r, err := Parse(text, nil)
			if err != nil {
				t.Errorf("%s: %v", text, err)
				continue
			}
			if r.Proto != tt.proto {
				t.Errorf("%s: proto %v, want %v", text, r.Proto, tt.proto)
			}
			if len(r.Matches) != 3 {
				t.Fatalf("%s: matches %+v", text, r.Matches)
			}
			for _, m := range r.Matches {
				if m.Buffer != tt.buf {
					t.Errorf("%s: match %+v in %v, want %v", text, m, m.Buffer, tt.buf)
				}
			}
			c, neg, bs := r.Matches[0], r.Matches[1], r.Matches[2]
			if string(c.Pattern) != "AB:cd" || !c.Nocase || !c.HasDepth || c.Depth != 10 {
				t.Errorf("%s: content %+v", text, c)
			}
			if !neg.Negated || !neg.HasDistance || bs.Kind != MatchBsize || bs.Int.Cmp != CmpGt || bs.Int.Value != 2 {
				t.Errorf("%s: negated %+v bsize %+v", text, neg, bs)
			}
		}
		if got := tt.buf.String(); got != canonical[tt.buf] || stickyBuffers[got] != tt.buf {
			t.Errorf("%s: buffer prints as %q, want %q", tt.keyword, got, canonical[tt.buf])
		}
	}
	// Every buffer has a name and belongs to one protocol (pkt_data none).
	for b := Buffer(1); b < NumBuffers; b++ {
		if bufferNames[b] == "" || strings.HasPrefix(b.String(), "buffer(") {
			t.Errorf("buffer %d has no name", b)
		}
		if bufferProto(b) == 0 {
			t.Errorf("buffer %v has no protocol", b)
		}
	}
}

func TestParseNewBufferErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{`alert dns any any -> any any (http.accept_enc; content:"gzip"; sid:1;)`, "http.accept_enc does not apply to dns rules"},
		{`alert http any any -> any any (tls.certs; content:"a"; sid:1;)`, "tls.certs does not apply to http rules"},
		{`alert udp any any -> any any (ja3s.hash; content:"a"; sid:1;)`, "needs a TCP protocol"},
		{`alert tcp any any -> any any (tls.cert_serial; content:"0A"; http.accept_lang; content:"en"; sid:1;)`, "belong to different protocols"},
		{`alert tcp any any -> any any (ja3.string; content:"771"; http.accept_lang; content:"en"; sid:1;)`, "belong to different protocols"},
		{`alert tls any any -> any any (tls.certs:1; sid:1;)`, "a sticky buffer takes no value"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.text, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.text, err, tt.want)
		}
	}
}

// TestETOpenNewBuffers checks ET Open rules that use the new buffers load
// as expected.
func TestETOpenNewBuffers(t *testing.T) {
	rs, _ := Read(strings.NewReader(string(readETOpen(t))), "et-open.rules", nil)
	count := map[Buffer]int{}
	bySID := map[uint32]*Rule{}
	for _, r := range rs {
		bySID[r.SID] = r
		seen := map[Buffer]bool{}
		for _, m := range r.Matches {
			if m.Buffer >= BufTLSCerts && !seen[m.Buffer] {
				seen[m.Buffer] = true
				count[m.Buffer]++
			}
		}
	}
	for b := BufTLSCerts; b < NumBuffers; b++ {
		t.Logf("%-18s %d rules", b, count[b])
		if count[b] == 0 {
			t.Errorf("no ET Open rule loads with %v", b)
		}
	}
	if count[BufTLSCerts] < 431 {
		t.Errorf("%d tls.certs rules load, want 431", count[BufTLSCerts])
	}
	// sid 2024788: tls.cert_serial with the serial's leading zero byte.
	if r := bySID[2024788]; r == nil || r.Proto != ProtoTLS || len(r.Matches) != 1 || r.Matches[0].Buffer != BufTLSCertSerial ||
		string(r.Matches[0].Pattern) != "00:E7:F9:B6:DE:A6:57:93:E2:44:6A:3B:95:C6:B3:EC:DF" || !r.Flow.ToClient {
		t.Errorf("sid 2024788 (tls.cert_serial): %+v", r)
	}
	// sid 2028831: ja3.hash and ja3.string together.
	if r := bySID[2028831]; r == nil || len(r.Matches) != 2 || r.Matches[0].Buffer != BufJA3Hash || r.Matches[1].Buffer != BufJA3String {
		t.Errorf("sid 2028831 (ja3.string): %+v", r)
	}
}
