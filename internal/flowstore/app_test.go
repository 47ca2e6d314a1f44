package flowstore

import (
	"testing"
	"time"
)

// TestApp: what the L7 reader learned round-trips, a later record without
// it (an update sent before the reader classified the connection, or after
// its entry expired) keeps it whatever the order, and ?app= selects.
func TestApp(t *testing.T) {
	s := openTest(t)
	a := conn("hv1/a/1", "10.77.1.10", "10.77.2.10", 443, t0)
	a.App, a.TLSVersion, a.ServerName = "APP_HTTPS", "1.3", "shop.lab.test"
	b := conn("hv1/b/1", "10.77.1.10", "10.77.3.10", 22, t0)
	b.App = "APP_SSH"
	plain := conn("hv1/c/1", "10.77.1.10", "10.77.4.10", 5432, t0)
	before := update(a, -time.Second, 10, 1, 10, 1)
	before.App, before.TLSVersion, before.ServerName = "", "", ""
	mustIngest(t, s, a, b, plain, before)
	later := update(a, 5*time.Second, 900, 9, 90, 9)
	later.App, later.TLSVersion, later.ServerName = "", "", ""
	mustIngest(t, s, later)

	got := mustQuery(t, s, Filter{App: "APP_HTTPS"})
	if len(got) != 1 || got[0].ID != a.ID || got[0].TLSVersion != "1.3" || got[0].ServerName != "shop.lab.test" || got[0].SrcBytes != 900 {
		t.Fatalf("APP_HTTPS flows = %+v, want %s with its TLS version, server name and the later counters", got, a.ID)
	}
	if got := mustQuery(t, s, Filter{App: "APP_SSH"}); len(got) != 1 || got[0].ID != b.ID || got[0].TLSVersion != "" {
		t.Errorf("APP_SSH flows = %+v, want only %s", got, b.ID)
	}
	if got := mustQuery(t, s, Filter{App: "APP_DNS"}); len(got) != 0 {
		t.Errorf("APP_DNS flows = %+v, want none", got)
	}
	for _, r := range mustQuery(t, s, Filter{}) {
		if r.ID == plain.ID && r.App != "" {
			t.Errorf("uninspected flow has app %q", r.App)
		}
	}
}
