package flow

import (
	"net/netip"
	"testing"
)

func TestUnanswered(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")
	for _, c := range []struct {
		name string
		r    Record
		want bool
	}{
		{"refused tcp", Record{Proto: 6, Dst: v4, SrcPackets: 1, SrcBytes: 60, DstPackets: 1, DstBytes: 40}, true},
		{"refused after a retry", Record{Proto: 6, Dst: v4, SrcPackets: 2, SrcBytes: 120, DstPackets: 1, DstBytes: 40}, true},
		{"refused over IPv6", Record{Proto: 6, Dst: v6, SrcPackets: 1, SrcBytes: 80, DstPackets: 1, DstBytes: 60}, true},
		{"tcp never answered", Record{Proto: 6, Dst: v4, SrcPackets: 3, SrcBytes: 180}, true},
		{"accepted, read while only the SYN-ACK was back", Record{Proto: 6, Dst: v4, SrcPackets: 2, SrcBytes: 112, DstPackets: 1, DstBytes: 60}, false},
		{"accepted over IPv6, SYN-ACK only", Record{Proto: 6, Dst: v6, SrcPackets: 2, SrcBytes: 152, DstPackets: 1, DstBytes: 80}, false},
		{"tcp handshake and close", Record{Proto: 6, Dst: v4, SrcPackets: 3, DstPackets: 2, DstBytes: 112}, false},
		{"tcp with data", Record{Proto: 6, Dst: v4, SrcPackets: 10, DstPackets: 8, DstBytes: 4000}, false},
		{"udp query answered", Record{Proto: 17, SrcPackets: 1, DstPackets: 1}, false},
		{"udp one way", Record{Proto: 17, SrcPackets: 5}, true},
		{"no counters (import)", Record{Proto: 6}, false},
		{"drop record", Record{Proto: 17, Kind: KindDrop, SrcPackets: 1, DstPackets: 1}, true},
		{"rejected", Record{Proto: 6, Verdict: Reject, SrcPackets: 4, DstPackets: 4}, true},
	} {
		if got := c.r.Unanswered(); got != c.want {
			t.Errorf("%s: Unanswered() = %v, want %v", c.name, got, c.want)
		}
	}
}
