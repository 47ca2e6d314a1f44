package flowstore

import (
	"testing"
	"time"
)

// TestUser: the user behind a flow round-trips, a later record without one
// (a resend from before the manager knew it) keeps it, and ?user= selects.
func TestUser(t *testing.T) {
	s := openTest(t)
	a := conn("hv3/a/1", "10.77.5.10", "10.77.4.10", 80, t0)
	a.SrcPort, a.User = 20001, "alice"
	b := conn("hv3/b/1", "10.77.5.10", "10.77.4.10", 80, t0)
	b.SrcPort, b.User = 21001, "bob"
	mustIngest(t, s, a, b)
	later := update(a, 5*time.Second, 900, 9, 90, 9)
	later.User = ""
	mustIngest(t, s, later)

	got := mustQuery(t, s, Filter{User: "alice"})
	if len(got) != 1 || got[0].ID != a.ID || got[0].User != "alice" || got[0].SrcBytes != 900 {
		t.Fatalf("alice's flows = %+v, want %s with its user and the later counters", got, a.ID)
	}
	if got := mustQuery(t, s, Filter{User: "carol"}); len(got) != 0 {
		t.Errorf("carol's flows = %+v, want none", got)
	}
	if all := mustQuery(t, s, Filter{}); len(all) != 2 || all[0].User == "" || all[1].User == "" {
		t.Errorf("all flows = %+v, want both with a user", all)
	}
}
