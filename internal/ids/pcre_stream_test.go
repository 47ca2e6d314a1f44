package ids

import (
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// A bounded pcre on the stream is searched only where a new match can
// start: each match is still found once, whether it lies in one delivery
// or spans two, and one inspected already is not reported again.
func TestStreamBoundedPCRE(t *testing.T) {
	tests := []struct {
		name string
		expr string
		segs []string
		want int
	}{
		{"one per segment", `id=[0-9]{1,3}'`, []string{"q id=1' and ", "then id=2'"}, 2},
		{"spanning", `id=[0-9]{1,3}'`, []string{"xx id=4", "2' yy"}, 1},
		{"old match not again", `id=[0-9]{1,3}'`, []string{"id=7' ", strings.Repeat("z", 100), "tail"}, 1},
		{"far after old bytes", `id=[0-9]{1,3}'`, []string{strings.Repeat("a", 1500), strings.Repeat("b", 1400) + "id=9'"}, 1},
		// With a lookbehind the search starts at the window's start.
		{"word boundary", `\bid=[0-9]{1,3}'`, []string{"x", "x id=1'"}, 1},
		{"utf8 input", `é{2}x`, []string{"\x00\xff", "ééx"}, 1},
	}
	for n, tc := range tests {
		e := compileOne(t, anyRule(90, rules.ActionAlert, rules.ProtoTCP, pcre(tc.expr, false)))
		k := newConn(t, uint16(43000+n), 3306)
		pkts := k.handshake()
		off := 0
		for _, s := range tc.segs {
			pkts = append(pkts, k.toServer(off, []byte(s)))
			off += len(s)
		}
		if alerts, _ := run(t, e, true, pkts...); len(alerts) != tc.want {
			t.Errorf("%s: %d alerts, want %d", tc.name, len(alerts), tc.want)
		}
	}
}
