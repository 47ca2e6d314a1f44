package flowstore

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// benchRecords is what 50 hosts send in batches of batchSize: 60% ends of
// short connections, 25% updates of long ones (which hit existing rows),
// 15% drop records.
func benchRecords(batches, batchSize int) [][]flow.Record {
	const hosts, long = 50, 5000
	start := time.Now().Add(-time.Hour)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	wl := func(i int) string { return fmt.Sprintf("wl-%d", i%2000) }
	out := make([][]flow.Record, batches)
	n := 0
	for b := range out {
		batch := make([]flow.Record, batchSize)
		for i := range batch {
			n++
			h := n % hosts
			src, dst := n%4000, 4000+n%700
			r := flow.Record{
				Host: fmt.Sprintf("host-%02d", h), Src: addr(src), Dst: addr(dst), Proto: 6, SrcPort: uint16(32768 + n%28000), DstPort: uint16(443 + n%5),
				SrcWorkload: wl(src), DstWorkload: wl(dst), RuleID: uint32(100 + n%300), Verdict: flow.Allow,
				Start: start.Add(time.Duration(n) * time.Microsecond),
			}
			r.Seen = r.Start.Add(time.Second)
			r.SrcBytes, r.SrcPackets, r.DstBytes, r.DstPackets = uint64(n%100000), uint64(n%1000), uint64(n%300000), uint64(n%2000)
			switch k := n % 20; {
			case k < 12:
				r.Kind, r.End = flow.KindEnd, r.Seen
				r.ID = flow.ConnID(r.Host, uint32(n), r.Start)
			case k < 17:
				// One of the long flows, whose totals grow batch by batch.
				l := n % long
				r.Kind, r.Start = flow.KindUpdate, start
				r.ID = flow.ConnID(fmt.Sprintf("host-%02d", l%hosts), uint32(l), start)
				r.SrcBytes = uint64(b * 1000)
			default:
				r.Kind, r.End, r.Verdict, r.DstPort = flow.KindDrop, r.Seen, flow.Drop, 22
				r.ID = fmt.Sprintf("%s/%016x/drop/%x", r.Host, start.UnixNano()+int64(b)*1e9, n)
			}
			batch[i] = r
		}
		out[b] = batch
	}
	return out
}

const benchBatches, benchBatchSize = 250, 2000 // 500k records an op

// BenchmarkIngest compares the store's ingest (multi-row upserts by flow
// ID, time index) with two baselines in the same run: the single-row path
// the store used before (one prepared upsert executed per record) and a raw
// INSERT of the same rows into an unindexed table, also one row per
// statement. Same driver, transactions and durability; the context is a
// cancellable one, as the manager's requests carry. Each op ingests 500k
// records into a fresh file all three ways, alternating, so that a noisy
// machine slows each alike.
//
//	go test -run XXX -bench Ingest -benchtime 3x ./internal/flowstore
func BenchmarkIngest(b *testing.B) {
	batches := benchRecords(benchBatches, benchBatchSize)
	total := float64(benchBatches * benchBatchSize)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type way struct {
		name      string
		wall, cpu time.Duration
		ingest    func(*SQLite) func([]flow.Record) error
	}
	ways := []*way{
		{name: "store", ingest: func(s *SQLite) func([]flow.Record) error {
			return func(recs []flow.Record) error { return s.Ingest(ctx, recs) }
		}},
		{name: "single-row", ingest: func(s *SQLite) func([]flow.Record) error {
			return func(recs []flow.Record) error { return rowByRow(ctx, s.w, s.upserts[len(upsertRows)-1], recs) }
		}},
		{name: "raw-insert", ingest: func(s *SQLite) func([]flow.Record) error {
			if _, err := s.w.Exec(rawTable); err != nil {
				b.Fatal(err)
			}
			stmt, err := s.w.Prepare(rawInsert)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { stmt.Close() })
			return func(recs []flow.Record) error { return rowByRow(ctx, s.w, stmt, recs) }
		}},
	}
	for b.Loop() {
		for _, w := range ways {
			b.StopTimer()
			ingest := w.ingest(openTest(b))
			b.StartTimer()
			t, c := time.Now(), cpuTime()
			for _, batch := range batches {
				if err := ingest(batch); err != nil {
					b.Fatal(err)
				}
			}
			w.wall, w.cpu = w.wall+time.Since(t), w.cpu+cpuTime()-c
		}
	}
	n := total * float64(b.N)
	for _, w := range ways {
		b.ReportMetric(n/w.wall.Seconds(), w.name+"-records/s")
		// Per CPU-second, which a machine shared with other jobs
		// disturbs less than wall time.
		b.ReportMetric(n/w.cpu.Seconds(), w.name+"-records/cpu-s")
	}
	b.ReportMetric(ways[1].wall.Seconds()/ways[0].wall.Seconds(), "store/single-row")
	b.ReportMetric(ways[1].cpu.Seconds()/ways[0].cpu.Seconds(), "store/single-row-cpu")
	b.ReportMetric(ways[2].wall.Seconds()/ways[0].wall.Seconds(), "store/raw")
}

// cpuTime is the CPU time this process has used (all threads: the writer
// and the garbage collector).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const rawTable = `CREATE TABLE raw (
	fid TEXT, kind INTEGER, host TEXT, src BLOB, dst BLOB, proto INTEGER, src_port INTEGER, dst_port INTEGER,
	icmp_type INTEGER, icmp_code INTEGER, src_wl TEXT, dst_wl TEXT, src_bytes INTEGER, src_pkts INTEGER,
	dst_bytes INTEGER, dst_pkts INTEGER, start_ns INTEGER, end_ns INTEGER, seen_ns INTEGER, rule_id INTEGER, verdict INTEGER,
	staged_rule INTEGER, mirror INTEGER, user TEXT, app TEXT, tls_version TEXT, server_name TEXT)`

var rawInsert = `INSERT INTO raw (` + columns + `) VALUES (?` + strings.Repeat(", ?", columnCount-1) + `)`

// rowByRow executes a one-record statement per record in one transaction:
// how the store ingested before multi-row statements.
func rowByRow(ctx context.Context, db *sql.DB, stmt *sql.Stmt, recs []flow.Record) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := tx.StmtContext(ctx, stmt)
	args := make([]any, 0, columnCount)
	for i := range recs {
		if _, err := st.ExecContext(ctx, appendArgs(args[:0], &recs[i])...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// BenchmarkQuery is the CLI's default query (newest 100) and a filtered one
// on a store of 500k records.
func BenchmarkQuery(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	for _, batch := range benchRecords(benchBatches, benchBatchSize) {
		if err := s.Ingest(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []struct {
		name string
		f    Filter
	}{
		{"newest-100", Filter{}},
		{"drops-to-cidr", Filter{Verdict: flow.Drop, To: Endpoint{Prefix: netip.MustParsePrefix("10.0.16.0/24")}}},
		{"from-workload-since", Filter{From: Endpoint{Workload: "wl-7"}, Since: time.Now().Add(-30 * time.Minute)}},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Query(ctx, q.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
