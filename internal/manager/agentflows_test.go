package manager

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
)

// runManager runs a real manager on dir with its agent channel on
// agentListen; stop stops it, and a later runManager on the same dir and
// address is the same manager coming back.
func runManager(t *testing.T, dir, agentListen string) (tm *testManager, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{DataDir: dir, Listen: ln.Addr().String(), AgentListen: agentListen}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			srv.Close()
		})
	}
	t.Cleanup(stop)
	admin, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	tm = &testManager{srv: srv, url: "https://" + ln.Addr().String(), dir: dir, tokens: map[string]string{api.RoleAdmin: strings.TrimSpace(string(admin))}}
	waitHealthy(t, tm)
	if srv.AgentAddr() == "" {
		t.Fatal("agent channel not listening")
	}
	return tm, stop
}

// waitAPIFlows polls GET /api/v1/flows until every id in want is there,
// and returns the flows by id.
func waitAPIFlows(t *testing.T, c *apiclient.Client, want ...string) map[string]api.Flow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		flows, err := c.Flows(context.Background(), apiclient.FlowQuery{Host: "hv-1", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]api.Flow{}
		for _, f := range flows {
			byID[f.ID] = f
		}
		missing := 0
		for _, id := range want {
			if _, ok := byID[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return byID
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d flows not in GET /flows: %+v", missing, len(want), flows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sameFlow compares the API's answer with the record the agent made, as
// the JSON the API would send for it.
func sameFlow(t *testing.T, got api.Flow, rec flow.Record) {
	t.Helper()
	want := apiFlow(&rec)
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("flow %s:\n got %s\nwant %s", rec.ID, g, w)
	}
}

// TestAgentFlowsToAPI follows flow records from the agent's buffer through
// SendFlows, the control plane and the flow store to GET /api/v1/flows,
// across a manager outage.
func TestAgentFlowsToAPI(t *testing.T) {
	dir := t.TempDir()
	tm, stop := runManager(t, dir, "127.0.0.1:0")
	agentAddr := tm.srv.AgentAddr()
	ctx := context.Background()
	admin := tm.client(t, api.RoleAdmin)
	tok, err := admin.CreateBootstrapToken(ctx, api.BootstrapTokenRequest{Host: "hv-1"})
	if err != nil {
		t.Fatal(err)
	}
	enf := &recordingEnforcer{applied: make(chan int64, 100)}
	a, err := agent.New(agent.Config{
		Manager: agentAddr, BootstrapToken: tok.Secret, CAFingerprint: tok.CAFingerprint,
		StateDir: t.TempDir(), HostName: "hv-1", IfacePattern: "bhtestnomatch*",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		HeartbeatTimeout: 2 * time.Second, FlowInterval: 20 * time.Millisecond,
	}, enf, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(actx) }()
	t.Cleanup(func() { stopAgent(); <-agentDone })
	select {
	case <-enf.applied:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent never received its desired state")
	}

	now := time.Now().UTC().Truncate(time.Microsecond)
	web, db := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::2")
	connID := flow.ConnID("hv-1", 42, now.Add(-time.Minute))
	update := flow.Record{ID: connID, Kind: flow.KindUpdate, Host: "hv-1",
		Src: web, Dst: netip.MustParseAddr("10.0.1.1"), Proto: 6, SrcPort: 40000, DstPort: 5432,
		SrcWorkload: "hv-1-bhw1", SrcBytes: 1000, SrcPackets: 10, DstBytes: 5000, DstPackets: 8,
		Start: now.Add(-time.Minute), Seen: now.Add(-30 * time.Second), RuleID: 120, Verdict: flow.Allow}
	drop := flow.Record{ID: "hv-1/0000000000000001/drop/1", Kind: flow.KindDrop, Host: "hv-1",
		Src: netip.MustParseAddr("fd00::9"), Dst: db, Proto: 58, ICMPType: 128, ICMPCode: 0,
		DstWorkload: "hv-1-bhw2", SrcBytes: 640, SrcPackets: 10,
		Start: now.Add(-5 * time.Second), End: now, Seen: now, RuleID: 99, Verdict: flow.Reject}
	// A record claiming another host's name stays in the sender's.
	claim := drop
	claim.ID, claim.Host, claim.RuleID = "hv-2/0000000000000001/drop/1", "hv-2", 98

	buf := a.FlowBuffer()
	buf.Push(update, drop, claim)
	got := waitAPIFlows(t, admin, connID, drop.ID, "hv-1/"+claim.ID)
	sameFlow(t, got[connID], update)
	sameFlow(t, got[drop.ID], drop)
	claim.ID, claim.Host = "hv-1/"+claim.ID, "hv-1"
	sameFlow(t, got[claim.ID], claim)

	// The end of the connection merges into its row.
	end := update
	end.Kind, end.End, end.Seen, end.SrcBytes, end.SrcPackets = flow.KindEnd, now, now, 1500, 14
	buf.Push(end)
	deadline := time.Now().Add(10 * time.Second)
	for got[connID].Kind != "end" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = waitAPIFlows(t, admin, connID)
	}
	sameFlow(t, got[connID], end)
	if len(got) != 3 {
		t.Errorf("%d flows after the end, want 3: %+v", len(got), got)
	}

	// The manager goes away; records made meanwhile wait in the agent.
	stop()
	var outage []flow.Record
	for i := range 5 {
		r := drop
		r.ID = flow.ConnID("hv-1", uint32(100+i), now)
		r.Kind, r.End, r.RuleID, r.Verdict = flow.KindEnd, now.Add(time.Second), uint32(200+i), flow.Allow
		outage = append(outage, r)
	}
	buf.Push(outage...)
	time.Sleep(500 * time.Millisecond) // several reconnection attempts
	if st := a.FlowStats(); st.Buffer.Len != len(outage) {
		t.Errorf("%d records waiting during the outage, want %d: %+v", st.Buffer.Len, len(outage), st)
	}

	tm2, _ := runManager(t, dir, agentAddr)
	admin2 := tm2.client(t, api.RoleAdmin)
	var ids []string
	for _, r := range outage {
		ids = append(ids, r.ID)
	}
	got = waitAPIFlows(t, admin2, ids...)
	for _, r := range outage {
		sameFlow(t, got[r.ID], r)
	}
	if len(got) != 3+len(outage) {
		t.Errorf("%d flows after the outage, want %d", len(got), 3+len(outage))
	}
	if st := a.FlowStats(); st.Buffer.Dropped != 0 || st.Buffer.Len != 0 {
		t.Errorf("agent flow stats after the outage: %+v", st)
	}
}
