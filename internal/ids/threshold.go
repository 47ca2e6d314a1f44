package ids

import (
	"net/netip"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// thresholds tracks threshold: and detection_filter: counts, bounded: when
// the table is full, expired entries are swept, and if none expired a new
// key is not tracked (its event counts as the first: alerts are not lost).
type thresholds struct {
	m   map[threshKey]*threshState
	max int
}

type threshKey struct {
	gid, sid uint32
	a, b     netip.Addr
}

type threshState struct {
	start time.Time
	count int
	fired bool
}

// check counts one event of rule r and says whether it passes: for a
// detection_filter, whether the rule matches; for a threshold, whether it
// alerts.
func (t *thresholds) check(r *rules.Rule, th *rules.Threshold, src, dst netip.Addr, ts time.Time, st *InspectorStats) bool {
	k := threshKey{gid: r.GID, sid: r.SID}
	switch th.Track {
	case rules.TrackBySrc:
		k.a = src
	case rules.TrackByDst:
		k.a = dst
	case rules.TrackByBoth:
		k.a, k.b = src, dst
	}
	if t.m == nil {
		t.m = map[threshKey]*threshState{}
	}
	window := time.Duration(th.Seconds) * time.Second
	s := t.m[k]
	if s == nil {
		if len(t.m) >= t.max {
			for kk, ss := range t.m {
				if ts.Sub(ss.start) > window {
					delete(t.m, kk)
				}
			}
			if len(t.m) >= t.max {
				st.ThresholdFull++
				return th.DetectionFilter && th.Count == 0 || !th.DetectionFilter
			}
		}
		s = &threshState{start: ts}
		t.m[k] = s
	} else if ts.Sub(s.start) >= window {
		*s = threshState{start: ts}
	}
	s.count++
	if th.DetectionFilter {
		// Suricata: from the event after the count-th within the window.
		return s.count > th.Count
	}
	switch th.Type {
	case rules.ThresholdLimit:
		return s.count <= th.Count
	case rules.ThresholdThreshold:
		if s.count >= th.Count {
			s.count = 0
			return true
		}
		return false
	case rules.ThresholdBoth:
		if s.count >= th.Count && !s.fired {
			s.fired = true
			return true
		}
		return false
	}
	return true
}
