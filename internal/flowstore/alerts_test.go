package flowstore

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func alertAt(sid uint32, sev int, src, dst, srcWL, dstWL string, at time.Time) Alert {
	eve := fmt.Sprintf(`{"timestamp":%q,"event_type":"alert","src_ip":%q,"dest_ip":%q,"alert":{"signature_id":%d,"severity":%d}}`,
		at.Format(time.RFC3339Nano), src, dst, sid, sev)
	return Alert{
		Time: at, Host: "hv1", SID: sid, GID: 1, Rev: 3, Severity: sev, Action: "allowed",
		Signature: fmt.Sprintf("TEST sid %d", sid), Category: "Web Application Attack",
		Proto: "TCP", AppProto: "http",
		Src: netip.MustParseAddr(src), SrcPort: 40000, Dst: netip.MustParseAddr(dst), DstPort: 80,
		SrcWorkload: srcWL, DstWorkload: dstWL, FlowID: 1234567890123, EVE: []byte(eve),
	}
}

func mustInsertAlerts(t *testing.T, s *SQLite, as ...Alert) {
	t.Helper()
	if err := s.InsertAlerts(context.Background(), as); err != nil {
		t.Fatal(err)
	}
}

func sids(as []Alert) []uint32 {
	var out []uint32
	for _, a := range as {
		out = append(out, a.SID)
	}
	return out
}

func TestAlertsRoundTripAndResend(t *testing.T) {
	s := openTest(t)
	a := alertAt(2024001, 1, "10.0.0.66", "10.0.0.10", "", "web-1", t0)
	v6 := alertAt(2024002, 2, "fd00::66", "fd00::10", "attacker", "web-1", t0.Add(time.Second))
	// A batch sent twice (its answer lost) is stored once; an alert with
	// no time or no record is skipped, not failing the batch.
	mustInsertAlerts(t, s, a, v6, Alert{Host: "hv1", EVE: []byte("{}")}, Alert{Time: t0})
	mustInsertAlerts(t, s, a, v6)
	got, err := s.QueryAlerts(context.Background(), AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("stored %d alerts, want 2: %+v", len(got), got)
	}
	checkRoundTrip(t, got, v6, a)
	// An explicit ID decides what is the same alert.
	twin := a
	twin.EVE = []byte(`{"other":"bytes"}`)
	twin.ID = []byte("agent-record-1")
	mustInsertAlerts(t, s, twin)
	twin.EVE = []byte(`{"completed":"differently"}`)
	mustInsertAlerts(t, s, twin)
	all, err := s.QueryAlerts(context.Background(), AlertFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("with an explicit ID: %d alerts, %v; want 3", len(all), err)
	}
	if s.Skipped() != 2 {
		t.Errorf("skipped %d, want 2", s.Skipped())
	}
}

// checkRoundTrip: newest first; every column back as it went in.
func checkRoundTrip(t *testing.T, got []Alert, wants ...Alert) {
	t.Helper()
	for i, want := range wants {
		g := got[i]
		if !g.Time.Equal(want.Time) || g.Host != want.Host || g.SID != want.SID || g.GID != want.GID || g.Rev != want.Rev ||
			g.Severity != want.Severity || g.Action != want.Action || g.Signature != want.Signature || g.Category != want.Category ||
			g.Proto != want.Proto || g.AppProto != want.AppProto || g.Src != want.Src || g.SrcPort != want.SrcPort ||
			g.Dst != want.Dst || g.DstPort != want.DstPort || g.SrcWorkload != want.SrcWorkload || g.DstWorkload != want.DstWorkload ||
			g.FlowID != want.FlowID || string(g.EVE) != string(want.EVE) {
			t.Errorf("alert %d:\n got %+v\nwant %+v", i, g, want)
		}
	}
}

func TestAlertFilters(t *testing.T) {
	s := openTest(t)
	mustInsertAlerts(t, s,
		alertAt(1, 1, "10.0.0.66", "10.0.0.10", "", "web-1", t0),
		alertAt(2, 2, "10.0.0.10", "10.0.0.20", "web-1", "db-1", t0.Add(time.Minute)),
		alertAt(3, 3, "10.0.0.66", "10.0.0.20", "", "db-1", t0.Add(2*time.Minute)),
		alertAt(1, 1, "10.0.0.66", "10.0.0.10", "", "web-1", t0.Add(3*time.Minute)),
	)
	other := alertAt(4, 1, "10.0.0.30", "10.0.0.31", "app-1", "app-2", t0.Add(4*time.Minute))
	other.Host = "hv2"
	mustInsertAlerts(t, s, other)
	for _, tc := range []struct {
		name string
		f    AlertFilter
		want []uint32
	}{
		{"all, newest first", AlertFilter{}, []uint32{4, 1, 3, 2, 1}},
		{"since", AlertFilter{Since: t0.Add(2 * time.Minute)}, []uint32{4, 1, 3}},
		{"until is exclusive", AlertFilter{Until: t0.Add(2 * time.Minute)}, []uint32{2, 1}},
		{"severity 1 or 2", AlertFilter{MaxSeverity: 2}, []uint32{4, 1, 2, 1}},
		{"severity 1", AlertFilter{MaxSeverity: 1}, []uint32{4, 1, 1}},
		{"workload at either end", AlertFilter{Workload: "web-1"}, []uint32{1, 2, 1}},
		{"workload as destination", AlertFilter{Workload: "db-1"}, []uint32{3, 2}},
		{"sid", AlertFilter{SID: 1}, []uint32{1, 1}},
		{"host", AlertFilter{Host: "hv2"}, []uint32{4}},
		{"limit", AlertFilter{Limit: 2}, []uint32{4, 1}},
		{"combined", AlertFilter{Workload: "db-1", MaxSeverity: 2}, []uint32{2}},
		{"nothing", AlertFilter{SID: 99}, nil},
	} {
		got, err := s.QueryAlerts(context.Background(), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(sids(got), tc.want) {
			t.Errorf("%s: sids %v, want %v", tc.name, sids(got), tc.want)
		}
	}
	if _, err := s.QueryAlerts(context.Background(), AlertFilter{Limit: -1}); err == nil {
		t.Error("negative limit accepted")
	}
	if _, err := s.QueryAlerts(context.Background(), AlertFilter{MaxSeverity: -1}); err == nil {
		t.Error("negative severity accepted")
	}
}

func TestCountAlerts(t *testing.T) {
	s := openTest(t)
	mustInsertAlerts(t, s,
		alertAt(1, 2, "10.0.0.66", "10.0.0.10", "", "web-1", t0),
		alertAt(2, 1, "10.0.0.66", "10.0.0.10", "", "web-1", t0.Add(time.Second)),
		alertAt(3, 3, "10.0.0.67", "10.0.0.10", "", "web-1", t0.Add(2*time.Second)),
		// Workload ends are counted by name, whatever their address.
		alertAt(4, 3, "10.0.0.10", "10.0.0.20", "web-1", "db-1", t0.Add(3*time.Second)),
		alertAt(5, 2, "10.0.0.11", "10.0.0.20", "web-1", "db-1", t0.Add(4*time.Second)),
		alertAt(6, 1, "10.0.0.11", "10.0.0.20", "web-1", "db-1", t0.Add(time.Hour)),
	)
	got, err := s.CountAlerts(context.Background(), AlertFilter{Until: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y AlertCount) int { return x.Src.Compare(y.Src) })
	ip := netip.MustParseAddr
	want := []AlertCount{
		{SrcWorkload: "web-1", DstWorkload: "db-1", Alerts: 2, Worst: 2},
		{Src: ip("10.0.0.66"), DstWorkload: "web-1", Alerts: 2, Worst: 1},
		{Src: ip("10.0.0.67"), DstWorkload: "web-1", Alerts: 1, Worst: 3},
	}
	if !slices.Equal(got, want) {
		t.Errorf("counts\n got %+v\nwant %+v", got, want)
	}
}

func TestPruneAlerts(t *testing.T) {
	s := openTest(t)
	now := time.Now()
	var as []Alert
	for i := range 50 {
		as = append(as, alertAt(uint32(i), 1, "10.0.0.1", "10.0.0.2", "", "", now.Add(-time.Duration(50-i)*time.Minute)))
	}
	mustInsertAlerts(t, s, as...)
	n, err := s.PruneAlerts(context.Background(), Retention{MaxAge: 20*time.Minute + time.Second})
	if err != nil || n != 30 {
		t.Fatalf("prune by age: %d, %v; want 30", n, err)
	}
	n, err = s.PruneAlerts(context.Background(), Retention{MaxRows: 5})
	if err != nil || n != 15 {
		t.Fatalf("prune by rows: %d, %v; want 15", n, err)
	}
	got, err := s.QueryAlerts(context.Background(), AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sids(got), []uint32{49, 48, 47, 46, 45}) {
		t.Errorf("kept %v", sids(got))
	}
}

func TestBackgroundRetentionPrunesAlerts(t *testing.T) {
	s := openTest(t, WithRetention(Retention{MaxAge: time.Hour}, 20*time.Millisecond))
	mustInsertAlerts(t, s, alertAt(1, 1, "10.0.0.1", "10.0.0.2", "", "", time.Now().Add(-2*time.Hour)),
		alertAt(2, 1, "10.0.0.1", "10.0.0.2", "", "", time.Now()))
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := s.QueryAlerts(context.Background(), AlertFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(sids(got), []uint32{2}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("old alert not pruned: %v", sids(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
