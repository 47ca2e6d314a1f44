package enforce

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/l7"
)

// TestAnnotate: a record of a connection the reader decided gets what it
// learned; other connections, drop records and a later connection reusing
// the tuple get nothing.
func TestAnnotate(t *testing.T) {
	decided := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	cli, srv := netip.MustParseAddr("10.77.1.10"), netip.MustParseAddr("10.77.2.10")
	tb := l7.NewTable(16, time.Hour)
	tb.Put(l7.Tuple{Src: cli, Dst: srv, Proto: 6, SPort: 40000, DPort: 443},
		l7.Learned{App: "APP_HTTPS", TLSVersion: "1.3", ServerName: "shop.lab.test", At: decided})
	rec := func(kind flow.Kind, sport uint16, start time.Time) flow.Record {
		return flow.Record{Kind: kind, Src: cli, Dst: srv, Proto: 6, SrcPort: sport, DstPort: 443, Start: start}
	}
	for _, tt := range []struct {
		name string
		r    flow.Record
		want string
	}{
		{"the connection", rec(flow.KindUpdate, 40000, decided.Add(-time.Second)), "APP_HTTPS"},
		{"its end", rec(flow.KindEnd, 40000, decided.Add(-time.Second)), "APP_HTTPS"},
		{"start from the collector's clock, a little late", rec(flow.KindEnd, 40000, decided.Add(time.Second)), "APP_HTTPS"},
		{"another source port", rec(flow.KindUpdate, 40001, decided), ""},
		{"a drop record", rec(flow.KindDrop, 40000, decided), ""},
		{"a later connection on the tuple", rec(flow.KindUpdate, 40000, decided.Add(time.Minute)), ""},
	} {
		r := tt.r
		annotate(tb, &r)
		if r.App != tt.want || (tt.want != "" && (r.TLSVersion != "1.3" || r.ServerName != "shop.lab.test")) {
			t.Errorf("%s: annotated %q %q %q, want %q", tt.name, r.App, r.TLSVersion, r.ServerName, tt.want)
		}
	}
}
