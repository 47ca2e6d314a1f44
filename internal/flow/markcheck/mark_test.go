// Package markcheck_test checks that the conntrack and packet marks the
// flow tests write into their nft rules mean what internal/nft means by
// them.
package markcheck_test

import (
	"testing"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// decode is internal/flow's test decoder.
func decode(m uint32) (uint32, flow.Verdict) { return m & 0xffffff, flow.Verdict(m >> 24 & 3) }

func TestMarkMatchesDataPlane(t *testing.T) {
	for _, tt := range []struct {
		v       nft.Verdict
		ingress bool
		want    flow.Verdict
	}{
		{nft.Verdict{Rule: 42, Action: nft.Allow}, false, flow.Allow},
		{nft.Verdict{Rule: nft.MaxRule, Action: nft.Drop, Log: true}, true, flow.Drop},
		{nft.Verdict{Rule: 1, Action: nft.Reject}, true, flow.Reject},
	} {
		m := nft.MakeMark(tt.v, tt.ingress)
		rule, v := decode(uint32(m))
		if rule != tt.v.Rule || v != tt.want || v.String() != tt.v.Action.String() {
			t.Errorf("mark %#x (%v): decoded rule %d %v, want %d %v", uint32(m), m, rule, v, tt.v.Rule, tt.want)
		}
		if got := nft.Mark(m).Verdict(); flow.Verdict(got.Action) != tt.want {
			t.Errorf("nft action %d is flow verdict %v, want %v", got.Action, flow.Verdict(got.Action), tt.want)
		}
	}
	// The marks the flow tests write by hand.
	for _, tt := range []struct {
		mark uint32
		want nft.Verdict
	}{
		{0x0100002a, nft.Verdict{Rule: 42, Action: nft.Allow}},
		{0x02000063, nft.Verdict{Rule: 99, Action: nft.Drop}},
		{0x03000064, nft.Verdict{Rule: 100, Action: nft.Reject}},
	} {
		if got := nft.Mark(tt.mark).Verdict(); got != tt.want {
			t.Errorf("mark %#x is %+v for nft, want %+v", tt.mark, got, tt.want)
		}
	}
}
