package rules

import (
	"bufio"
	"bytes"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// fuzzSeeds are rules in the shapes rule files use, written for these
// tests.
var fuzzSeeds = []string{
	`alert http $EXTERNAL_NET any -> [$HOME_NET,$HTTP_SERVERS] any (msg:"jndi"; flow:established,to_server; content:"|24 7b|jndi|3a|ldap|3a 2f 2f|"; nocase; fast_pattern; reference:cve,2021-44228; classtype:attempted-admin; sid:1; rev:1; metadata:attack_target Server, created_at 2021_12_10;)`,
	`alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (msg:"ua"; flow:to_server,established; content:"User-Agent|3a| evil"; http_header; pcre:"/^User-Agent\x3a\x20[^\r\n]{1100,}/Hmi"; sid:2;)`,
	`alert dns $HOME_NET any -> any any (msg:"dns"; dns.query; dotprefix; content:".bad.example"; nocase; endswith; threshold:type limit, track by_src, count 1, seconds 60; sid:3;)`,
	`alert tls any any -> any any (tls.sni; content:"x"; startswith; tls.version:1.2; ja3_hash; content:"abcd"; sid:4;)`,
	`drop tcp any any -> any 445 (flow:to_server; content:"|ff|SMB"; offset:4; depth:4; byte_test:2,>,0x100,0,relative,little; byte_jump:4,2,relative,align,multiplier 2; isdataat:!4,relative; sid:5;)`,
	`alert udp any any <> ![10.0.0.0/8,!10.1.0.0/16] [1:1024,!80] (dsize:<100; flowbits:isset,a|b; flowbits:noalert; detection_filter:track by_dst,count 5,seconds 2; sid:6;)`,
	`alert icmp any any -> any any (itype:8; icode:0; sid:7;)`,
	`alert tcp any any -> any any (flags:S,CE; pcre:!"/(?i)a(?:b|c)+\Qd.e\E[\x80-\xff]{2}/smR"; sid:8;)`,
	`alert http any any -> any any (http.method; content:"POST"; http.uri; content:"/a"; bsize:>2; urilen:<100; file_data; content:"MZ"; within:2; distance:0; sid:9;)`,
	"alert tcp any any -> any any (msg:\"a \\\" b\\; c\"; content:!\"x\"; \\\n sid:10;)",
	`alert ssh any any -> any any (ssh.softwareversion:"PuTTY"; ssh.proto; content:"2.0"; sid:11;)`,
	`alert tcp any any -> any any (content:"a"; fast_pattern:0,1; priority:2; gid:3; sid:12;)`,
	`alert tls any any -> any any (flow:established,to_client; tls.certs; content:"|30 82|"; depth:2; pcre:"/^\d{4}/R"; content:!"|06 03|"; distance:0; tls_cert_serial; content:"00:E7"; ja3s.hash; content:"abc"; sid:13;)`,
	`alert http any any -> any any (http.accept_enc; content:",|20|,"; http_accept_lang; content:"en-US"; bsize:5; sid:14;)`,
	`alert tcp any any -> any any (ja3.string; content:"771,"; startswith; ja3_hash; content:"e7d7"; sid:15;)`,
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	// More seeds from the real rule file when it is beside the
	// repository (it never goes into the corpus on disk).
	if data, ok := etOpenData(); ok {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for n := 0; sc.Scan(); n++ {
			if l := sc.Text(); !strings.HasPrefix(l, "#") && n%97 == 0 {
				f.Add(l)
			}
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := Parse(text, nil)
		if err != nil {
			if r != nil {
				t.Fatal("a rule and an error")
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		again, err := Parse(r.Raw, nil)
		if err != nil {
			t.Fatalf("Raw %q does not parse again: %v", r.Raw, err)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("Raw %q parses to a different rule:\n%+v\n%+v", r.Raw, r, again)
		}
		for _, m := range r.Matches {
			if m.Kind == MatchPCRE {
				if _, err := regexp.Compile(m.Regexp); err != nil {
					t.Fatalf("pcre translated to %q, which does not compile: %v", m.Regexp, err)
				}
			}
		}
		// The same text as a file.
		rs, probs := Read(strings.NewReader(text), "fuzz.rules", nil)
		if len(rs)+len(probs) == 0 {
			t.Fatal("Read of a parsable rule gave nothing")
		}
	})
}

func FuzzTranslatePCRE(f *testing.F) {
	for _, s := range []string{`^GET /`, `a\x41\x{42}\103\0`, `[\x80-\xff]{1075,}`, `(?'n'a)(?#c)\Qx\E`, `a{2}+`, `(?=a)`, `\h\H\v\V[\h]`, `(a)\1`, `[]a[:alpha:]]`, `\cA\e`} {
		f.Add(s, "smi")
		f.Add(s, "xAGR")
	}
	f.Fuzz(func(t *testing.T, expr, flags string) {
		m, err := translatePCRE(expr, flags)
		if err != nil {
			return
		}
		if _, cerr := regexp.Compile(m.Regexp); cerr != nil {
			t.Fatalf("/%s/%s translated to %q, which does not compile: %v", expr, flags, m.Regexp, cerr)
		}
	})
}

// etOpenData reads the ET Open file if it is there.
func etOpenData() ([]byte, bool) {
	data, err := readGzFile(etOpenFile())
	return data, err == nil
}
