package manager

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/flowstore"
)

func TestFlowsAPI(t *testing.T) {
	tm := startManager(t)
	c := tm.client(t, api.RoleAuditor)
	ctx := context.Background()
	var ae *apiclient.Error
	// New opened the flow store; opening again is harmless.
	if err := tm.srv.openFlows(); err != nil {
		t.Fatalf("second openFlows: %v", err)
	}

	now := time.Now().UTC().Truncate(time.Millisecond)
	web, db, attacker := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.9.9.9")
	conn := flow.Record{ID: "1a/2b", Kind: flow.KindUpdate, Src: web, Dst: db, Proto: 6, SrcPort: 40000, DstPort: 5432,
		SrcWorkload: "web-1", DstWorkload: "db-1", SrcBytes: 100, SrcPackets: 2, DstBytes: 50, DstPackets: 1,
		Start: now.Add(-time.Minute), Seen: now.Add(-30 * time.Second), RuleID: 120, Verdict: flow.Allow}
	end := conn
	end.Kind, end.End, end.Seen, end.SrcBytes, end.SrcPackets = flow.KindEnd, now.Add(-10*time.Second), now.Add(-10*time.Second), 300, 5
	drop := flow.Record{ID: "d/1", Kind: flow.KindDrop, Host: "spoofed", Src: attacker, Dst: db, Proto: 1, ICMPType: 8,
		DstWorkload: "db-1", SrcPackets: 40, SrcBytes: 3360, Start: now.Add(-5 * time.Second), End: now, Seen: now, RuleID: 99, Verdict: flow.Drop}
	// The update arrives twice (a lost ack), then the end and a drop.
	for _, batch := range [][]flow.Record{{conn}, {conn}, {end, drop}} {
		if err := tm.srv.IngestFlows(ctx, "host-a", batch); err != nil {
			t.Fatal(err)
		}
	}

	all, err := c.Flows(ctx, apiclient.FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d flows, want 2: %+v", len(all), all)
	}
	d, e := all[0], all[1]
	if d.Kind != "drop" || d.Host != "host-a" || d.ID != "host-a/d/1" || d.Proto != "icmp" || d.ICMPType == nil || *d.ICMPType != 8 || d.Verdict != "drop" || d.RuleID != 99 || d.SrcPackets != 40 {
		t.Errorf("drop: %+v", d)
	}
	if e.Kind != "end" || e.SrcBytes != 300 || e.SrcPackets != 5 || e.DstBytes != 50 || e.End == nil || !e.End.Equal(end.End) || !e.Start.Equal(conn.Start) ||
		e.Src != "10.0.0.1" || e.SrcPort != 40000 || e.Dst != "10.0.1.1" || e.DstPort != 5432 || e.Proto != "tcp" || e.ICMPType != nil || e.SrcWorkload != "web-1" {
		t.Errorf("end: %+v", e)
	}

	for _, tt := range []struct {
		q    apiclient.FlowQuery
		want int
	}{
		{apiclient.FlowQuery{From: "web-1"}, 1},
		{apiclient.FlowQuery{To: "10.0.0.0/16"}, 2},
		{apiclient.FlowQuery{From: "10.9.9.9", Verdict: "drop"}, 1},
		{apiclient.FlowQuery{Verdict: "allow", Rule: 120, Proto: "tcp", Port: 5432}, 1},
		{apiclient.FlowQuery{Kind: "drop", Host: "host-a"}, 1},
		{apiclient.FlowQuery{Since: "20s"}, 2},
		{apiclient.FlowQuery{Until: "30s"}, 1},
		{apiclient.FlowQuery{Since: now.Add(time.Second).Format(time.RFC3339)}, 0},
		{apiclient.FlowQuery{Limit: 1}, 1},
		{apiclient.FlowQuery{Proto: "17"}, 0},
	} {
		got, err := c.Flows(ctx, tt.q)
		if err != nil || len(got) != tt.want {
			t.Errorf("%+v: %d flows (%v), want %d", tt.q, len(got), err, tt.want)
		}
	}
	for _, q := range []apiclient.FlowQuery{
		{Verdict: "maybe"}, {Kind: "start"}, {Proto: "tcpx"}, {Since: "yesterday"}, {Until: "soon"}, {From: "a b"}, {Limit: flowstore.MaxLimit + 1},
	} {
		if _, err := c.Flows(ctx, q); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("%+v: %v, want 400", q, err)
		}
	}
	if _, err := tm.client(t, api.RoleAuditor).Raw(ctx, api.Prefix+"/flows?rule=x&port=70000"); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("bad rule: %v, want 400", err)
	}
}
