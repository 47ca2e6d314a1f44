package manager

import (
	"testing"
	"time"
)

func TestSyncDue(t *testing.T) {
	now := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		interval time.Duration
		last     time.Time
		want     bool
	}{
		{0, time.Time{}, false},                          // only on request
		{time.Hour, time.Time{}, true},                   // never synced
		{time.Hour, now.Add(-59 * time.Minute), false},   // not yet
		{time.Hour, now.Add(-time.Hour), true},           // just due
		{time.Minute, now.Add(-2 * time.Minute), true},   // overdue
		{-time.Minute, now.Add(-2 * time.Minute), false}, // nonsense interval: never
	} {
		if got := syncDue(c.interval, c.last, now); got != c.want {
			t.Errorf("syncDue(%v, %v) = %v, want %v", c.interval, c.last, got, c.want)
		}
	}
}
