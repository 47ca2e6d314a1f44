package ids

import (
	"net/netip"
	"testing"
)

// A pcre naming bytes above 0x7f matches those bytes, as PCRE does, and
// not the UTF-8 encoding of the runes with the same numbers; on the
// stream, in a datagram and on a packet, and after a content
// (relative).
func TestPCRELatin1Bytes(t *testing.T) {
	e := compileOne(t, parse(t,
		`alert tcp any any -> any any (msg:"latin1 stream"; flow:to_server; pcre:"/\xff\xfeabc/"; sid:101; rev:1;)`,
		`alert udp any any -> any any (msg:"latin1 datagram"; pcre:"/\xff\xfeabc/"; sid:102; rev:1;)`,
		`alert tcp any any -> any any (msg:"latin1 relative"; flow:to_server; content:"KEY"; pcre:"/^[\x80-\xff]{2}Z/R"; sid:103; rev:1;)`,
	)...)
	for _, r := range e.rules {
		for _, g := range r.groups {
			for _, m := range g.ms {
				if m.re != nil && !m.Latin1 {
					t.Fatalf("sid %d: pcre %q not marked Latin1 by the parser", r.r.SID, m.Regexp)
				}
			}
		}
	}
	tests := []struct {
		name    string
		payload string
		want    []uint32
	}{
		{"bytes", "x\xff\xfeabc", []uint32{101}},
		{"utf8 runes", "x\u00ff\u00feabc", nil},
		{"relative bytes", "KEY\x80\xffZ", []uint32{103}},
		{"relative utf8", "KEY\u0080\u00ffZ", nil},
		{"ascii", "KEYabZ abc", nil},
	}
	for n, tc := range tests {
		k := newConn(t, uint16(42000+n), 9000)
		pkts := append(k.handshake(), k.toServer(0, []byte(tc.payload)))
		alerts, _ := run(t, e, true, pkts...)
		if got := sids(alerts); !equalSIDs(got, tc.want) {
			t.Errorf("tcp %s: alerts %v, want %v", tc.name, got, tc.want)
		}
	}
	c, s := netip.AddrPortFrom(clientAddr, 5000), netip.AddrPortFrom(serverAddr, 5001)
	for _, tc := range []struct {
		payload string
		want    []uint32
	}{{"\xff\xfeabc", []uint32{102}}, {"\u00ff\u00feabc", nil}} {
		alerts, _ := run(t, e, false, udpPacket(t, c, s, []byte(tc.payload)))
		if got := sids(alerts); !equalSIDs(got, tc.want) {
			t.Errorf("udp %q: alerts %v, want %v", tc.payload, got, tc.want)
		}
	}
}

func equalSIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The Latin-1 reading and the required runs allocate nothing when the
// expression does not match (the common case).
func TestPCREPathsNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not measurable under the race detector (sync.Pool drops items)")
	}
	rs := parse(t,
		`alert tcp any any -> any any (msg:"latin1"; pcre:"/\xff\xfe[a-c]+x/"; sid:1; rev:1;)`,
		`alert tcp any any -> any any (msg:"utf8"; pcre:"/user=[a-z]+:admin/i"; sid:2; rev:1;)`,
	)
	sc := new(matchScratch)
	// Each holds the expressions' required runs, so the regexps run.
	bufs := [][]byte{[]byte("\x00\x01\xff\xfea\x80x no"), []byte("USER=:admin and user=9:admin"), []byte("\xc3\xa9user=\xff:admin\xff\xfeb-x")}
	for _, r := range rs {
		c, _, err := compileRule(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bufs {
			allocs := testing.AllocsPerRun(50, func() {
				if _, _, ok := matchAll(c, b, 0, -1, nil, sc); ok {
					t.Fatalf("sid %d matched %q", r.SID, b)
				}
			})
			if allocs != 0 {
				t.Errorf("sid %d on %q: %v allocations", r.SID, b, allocs)
			}
		}
	}
}
