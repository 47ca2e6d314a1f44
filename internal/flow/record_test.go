package flow

import "testing"

func TestUnanswered(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Record
		want bool
	}{
		{"refused tcp", Record{Proto: 6, SrcPackets: 1, DstPackets: 1}, true},
		{"refused after a retry", Record{Proto: 6, SrcPackets: 2, DstPackets: 1}, true},
		{"tcp never answered", Record{Proto: 6, SrcPackets: 3}, true},
		{"tcp handshake and close", Record{Proto: 6, SrcPackets: 3, DstPackets: 2}, false},
		{"tcp with data", Record{Proto: 6, SrcPackets: 10, DstPackets: 8}, false},
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
