package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/policy"
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

// BenchmarkIngestFlows is the manager's whole path for a batch of flows —
// naming both ends from the inventory and computing the staged rule with
// the latest revision's evaluator, then the store — against the store
// alone with the same records, in the same run. The inventory has 2000
// workloads under a policy of per-tier rules and a staged rule; the
// records come unnamed, as an exporter's do. Each op ingests 200k records
// both ways into fresh stores.
//
//	go test -run XXX -bench IngestFlows -benchtime 3x ./internal/manager
func BenchmarkIngestFlows(b *testing.B) {
	const batches, batchSize, workloads = 100, 2000, 2000
	var docs strings.Builder
	for i := range workloads {
		fmt.Fprintf(&docs, "apiVersion: bulkhead.io/v1\nkind: Workload\nmetadata: {name: wl-%d}\nspec: {ips: [10.0.%d.%d], tags: {tier: t%d}}\n---\n",
			i, i/250, i%250+1, i%4)
	}
	docs.WriteString(`apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  category: Application
  rules:
  - {name: t0-t1, sources: [10.0.0.0/24], destinations: [10.0.1.0/24], services: [tcp/443], action: allow}
  - {name: t1-t2, sources: [10.0.1.0/24], destinations: [10.0.2.0/24], services: [tcp/5432], action: allow}
  - {name: staged-ssh, destinations: [10.0.0.0/16], services: [tcp/22], action: drop, mode: staged}
  - {name: rest, action: allow}
`)
	parsed, err := policy.Decode("bench.yaml", []byte(docs.String()))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-time.Hour)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)}) }
	recs := make([][]flow.Record, batches)
	for n := range batches * batchSize {
		src, dst := n%workloads, (n*7+3)%(workloads+500) // some destinations outside the inventory
		r := flow.Record{ID: fmt.Sprintf("ipfix/192.0.2.1/%016x", n), Host: "ipfix/192.0.2.1", Kind: flow.KindEnd,
			Src: addr(src), Dst: addr(dst), Proto: 6, SrcPort: uint16(32768 + n%28000), DstPort: []uint16{443, 5432, 22, 8080}[n%4],
			SrcBytes: uint64(n % 100000), SrcPackets: uint64(n % 1000), Start: start.Add(time.Duration(n) * time.Microsecond), Verdict: flow.Allow}
		r.End, r.Seen = r.Start.Add(time.Second), r.Start.Add(time.Second)
		recs[n/batchSize] = append(recs[n/batchSize], r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newServer := func() *Server {
		srv, err := New(Config{DataDir: b.TempDir(), Listen: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Close() })
		return srv
	}
	// The policy is applied through the API handler, as an operator would.
	srv := newServer()
	var apply api.ApplyRequest
	for _, d := range parsed {
		obj, err := json.Marshal(d.Object)
		if err != nil {
			b.Fatal(err)
		}
		apply.Documents = append(apply.Documents, api.Document{Source: d.Source, Object: obj})
	}
	body, _ := json.Marshal(apply)
	admin, _ := os.ReadFile(filepath.Join(srv.cfg.DataDir, AdminTokenFile))
	req := httptest.NewRequest("POST", api.Prefix+"/apply", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	copyOf := func(batch []flow.Record) []flow.Record { return append([]flow.Record(nil), batch...) }
	var manager, store, managerCPU, storeCPU time.Duration
	for b.Loop() {
		b.StopTimer()
		srv.closeFlows()
		os.Remove(filepath.Join(srv.cfg.DataDir, flowstore.FileName))
		if err := srv.openFlows(); err != nil {
			b.Fatal(err)
		}
		in := make([][]flow.Record, batches)
		for i := range recs {
			in[i] = copyOf(recs[i])
		}
		b.StartTimer()
		t0, c0 := time.Now(), cpuTime()
		for _, batch := range in {
			if err := srv.storeFlows(ctx, srv.flows, "bench", batch); err != nil {
				b.Fatal(err)
			}
		}
		manager, managerCPU = manager+time.Since(t0), managerCPU+cpuTime()-c0
		b.StopTimer()
		if n, _ := srv.flows.Query(ctx, flowstore.Filter{StagedRuleID: stagedRuleOf(b, srv), Limit: 1}); len(n) != 1 {
			b.Fatal("no record carries the staged rule: the benchmark does not evaluate")
		}
		fs, err := flowstore.OpenSQLite(filepath.Join(b.TempDir(), flowstore.FileName))
		if err != nil {
			b.Fatal(err)
		}
		for i := range recs {
			in[i] = copyOf(recs[i])
		}
		b.StartTimer()
		t0, c0 = time.Now(), cpuTime()
		for _, batch := range in {
			if err := fs.Ingest(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		store, storeCPU = store+time.Since(t0), storeCPU+cpuTime()-c0
		b.StopTimer()
		fs.Close()
		b.StartTimer()
	}
	n := float64(batches * batchSize * b.N)
	b.ReportMetric(n/manager.Seconds(), "manager-records/s")
	b.ReportMetric(n/store.Seconds(), "store-records/s")
	b.ReportMetric(store.Seconds()/manager.Seconds(), "manager/store")
	b.ReportMetric(n/managerCPU.Seconds(), "manager-records/cpu-s")
	b.ReportMetric(n/storeCPU.Seconds(), "store-records/cpu-s")
}

// stagedRuleOf is the id of the benchmark's staged rule.
func stagedRuleOf(b *testing.B, srv *Server) uint32 {
	rev, err := srv.store.Latest(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return rev.Set.RuleIDs["p/staged-ssh"]
}

// cpuTime is the CPU time this process has used, all threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
