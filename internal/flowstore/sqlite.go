package flowstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/store"

	_ "modernc.org/sqlite" // registers driver "sqlite"
)

// FileName is the flow database's name in the manager's data directory.
const FileName = "flows.db"

// SQLite is the embedded Store: one database file in WAL mode, written by
// one connection (the manager ingests batches one after another) and read
// by a pool.
type SQLite struct {
	w *sql.DB
	r *sql.DB
	// upserts[i] merges upsertRows[i] records in one statement.
	upserts [len(upsertRows)]*sql.Stmt
	path    string
	log     *slog.Logger

	skipped atomic.Uint64

	stop chan struct{}
	done sync.WaitGroup
}

var _ Store = (*SQLite)(nil)

// Option changes how OpenSQLite opens the store.
type Option func(*options)

type options struct {
	retention Retention
	every     time.Duration
	log       *slog.Logger
}

// WithRetention prunes the store every interval in the background, until
// Close.
func WithRetention(r Retention, every time.Duration) Option {
	return func(o *options) { o.retention, o.every = r, every }
}

// WithLogger sets the logger of background pruning.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

const busyTimeout = 5 * time.Second

// OpenSQLite opens (creating if needed) the flow database at path and
// brings its schema up to date.
func OpenSQLite(path string, opts ...Option) (*SQLite, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("flowstore: open %s: %w", path, err)
	}
	// Flows say who talks to whom: keep the file private like the store.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("flowstore: open %s: %w", path, err)
	}
	f.Close()

	base := (&url.URL{Scheme: "file", Path: abs}).String()
	common := fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds())
	// synchronous=FULL: a batch the agent was told is stored survives a
	// power loss. With batches of thousands of records the fsync costs
	// nothing measurable (BenchmarkIngest, NORMAL vs FULL).
	w, err := sql.Open("sqlite", base+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=cache_size(-65536)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("flowstore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	s := &SQLite{w: w, path: path, log: o.log, stop: make(chan struct{})}
	ctx := context.Background()
	fail := func(err error) (*SQLite, error) {
		s.w.Close()
		if s.r != nil {
			s.r.Close()
		}
		return nil, fmt.Errorf("flowstore: open %s: %w", path, err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Errorf("journal mode is %q, want wal", mode))
	}
	if err := store.Migrate(ctx, w, migrations); err != nil {
		return fail(err)
	}
	for i, n := range upsertRows {
		if s.upserts[i], err = w.PrepareContext(ctx, upsertSQL(n)); err != nil {
			return fail(fmt.Errorf("prepare ingest: %w", err))
		}
	}
	r, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		return fail(err)
	}
	s.r = r
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		return fail(err)
	}
	if o.every > 0 && (o.retention.MaxAge > 0 || o.retention.MaxRows > 0) {
		s.done.Add(1)
		go s.pruneLoop(o.retention, o.every)
	}
	return s, nil
}

// Close stops background pruning and closes the database.
func (s *SQLite) Close() error {
	close(s.stop)
	s.done.Wait()
	var errs []error
	for _, st := range s.upserts {
		errs = append(errs, st.Close())
	}
	errs = append(errs, s.r.Close(), s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flowstore: close %s: %w", s.path, err)
	}
	return nil
}

// Skipped counts records Ingest refused as malformed.
func (s *SQLite) Skipped() uint64 { return s.skipped.Load() }

const columns = "fid, kind, host, src, dst, proto, src_port, dst_port, icmp_type, icmp_code, src_wl, dst_wl, " +
	"src_bytes, src_pkts, dst_bytes, dst_pkts, start_ns, end_ns, seen_ns, rule_id, verdict, staged_rule, mirror, user, app, tls_version, server_name"

// upsertTail merges a record into its flow's row. Every SET expression
// sees the row as it was, and each is idempotent (max, or a choice by
// seen_ns), so ingesting a record twice is the same as once. Two records of
// one flow in one statement are merged the same way: SQLite inserts a
// multi-row VALUES list row by row, so the second conflicts with the first.
// The L7 names (app, tls_version, server_name) are learned once per
// connection; max keeps them against a later record without them, in any
// order.
const upsertTail = `
ON CONFLICT (start_ns, fid) DO UPDATE SET
	kind      = max(kind, excluded.kind),
	src_wl    = CASE WHEN excluded.src_wl <> '' THEN excluded.src_wl ELSE src_wl END,
	dst_wl    = CASE WHEN excluded.dst_wl <> '' THEN excluded.dst_wl ELSE dst_wl END,
	src_bytes = max(src_bytes, excluded.src_bytes),
	src_pkts  = max(src_pkts, excluded.src_pkts),
	dst_bytes = max(dst_bytes, excluded.dst_bytes),
	dst_pkts  = max(dst_pkts, excluded.dst_pkts),
	end_ns    = max(end_ns, excluded.end_ns),
	seen_ns   = max(seen_ns, excluded.seen_ns),
	rule_id   = CASE WHEN excluded.seen_ns > seen_ns THEN excluded.rule_id ELSE rule_id END,
	verdict   = CASE WHEN excluded.seen_ns > seen_ns THEN excluded.verdict ELSE verdict END,
	staged_rule = CASE WHEN excluded.seen_ns > seen_ns THEN excluded.staged_rule ELSE staged_rule END,
	mirror    = CASE WHEN excluded.seen_ns > seen_ns THEN excluded.mirror ELSE mirror END,
	user      = CASE WHEN excluded.user <> '' THEN excluded.user ELSE user END,
	app       = max(app, excluded.app),
	tls_version = max(tls_version, excluded.tls_version),
	server_name = max(server_name, excluded.server_name)`

// upsertRows are the numbers of records one prepared upsert statement
// takes, largest first; a batch is cut greedily into them. One statement
// per record spent most of ingest in per-statement work (binding through
// database/sql, stepping, resetting, and with a cancellable context a
// goroutine per call): 256 rows a statement ingest about 1.5 times as many
// records per CPU second (BenchmarkIngest). 256 x 27 parameters stay well
// under SQLite's limit of 32766.
var upsertRows = [...]int{256, 64, 16, 4, 1}

// columnCount is the number of columns in columns, one parameter each.
const columnCount = 27

// upsertSQL is the upsert of n records.
func upsertSQL(n int) string {
	row := "(?" + strings.Repeat(", ?", columnCount-1) + ")"
	var b strings.Builder
	b.WriteString("INSERT INTO flows (" + columns + ")\nVALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(",\n\t")
		}
		b.WriteString(row)
	}
	b.WriteString(upsertTail)
	return b.String()
}

// appendArgs appends a record's parameters in column order.
func appendArgs(args []any, r *flow.Record) []any {
	return append(args,
		r.ID, int64(r.Kind), r.Host, addrKey(r.Src), addrKey(r.Dst),
		int64(r.Proto), int64(r.SrcPort), int64(r.DstPort), int64(r.ICMPType), int64(r.ICMPCode),
		r.SrcWorkload, r.DstWorkload,
		int64(r.SrcBytes), int64(r.SrcPackets), int64(r.DstBytes), int64(r.DstPackets),
		nanos(r.Start), nanos(r.End), nanos(r.Seen), int64(r.RuleID), int64(r.Verdict), int64(r.StagedRuleID), r.Mirror, r.User,
		r.App, r.TLSVersion, r.ServerName)
}

// addrKey is an address as stored: 16 bytes, IPv4 mapped into IPv6, so
// that a prefix is a range of byte strings (SQLite compares BLOBs with
// memcmp).
func addrKey(a netip.Addr) []byte {
	b := a.Unmap().As16()
	return b[:]
}

func addrFromKey(b []byte) netip.Addr {
	if len(b) != 16 {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(b)).Unmap()
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func isValid(r *flow.Record) bool {
	return r.ID != "" && r.Kind >= flow.KindUpdate && r.Kind <= flow.KindDrop && r.Src.IsValid() && r.Dst.IsValid()
}

// Ingest stores a batch in one transaction.
func (s *SQLite) Ingest(ctx context.Context, recs []flow.Record) error {
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flowstore: ingest %d records: %w", len(recs), err)
	}
	defer tx.Rollback()
	args := make([]any, 0, upsertRows[0]*columnCount)
	var (
		stmts [len(upsertRows)]*sql.Stmt
		size  int // index in upsertRows of the statement being filled
		rows  int // records in args
	)
	flush := func() error {
		if stmts[size] == nil {
			stmts[size] = tx.StmtContext(ctx, s.upserts[size])
		}
		if _, err := stmts[size].ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("flowstore: ingest %d records: %w", len(recs), err)
		}
		args, rows = args[:0], 0
		return nil
	}
	left := 0 // valid records not yet in args
	for i := range recs {
		if isValid(&recs[i]) {
			left++
		} else {
			s.skipped.Add(1)
		}
	}
	for i := range recs {
		r := &recs[i]
		if !isValid(r) {
			continue
		}
		if rows == 0 {
			// The largest statement the records left fill; left only
			// shrinks, so the choice only moves to smaller ones.
			for upsertRows[size] > left {
				size++
			}
		}
		args = appendArgs(args, r)
		rows++
		left--
		if rows == upsertRows[size] {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	// The transaction's statements close with it.
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flowstore: ingest %d records: %w", len(recs), err)
	}
	return nil
}

// lastAddr is the highest address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.As16()
	host := a.BitLen() - p.Bits()
	for i := 15; host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	if a.Is4() {
		return netip.AddrFrom4([4]byte(b[12:16]))
	}
	return netip.AddrFrom16(b)
}

func endpointWhere(col, wlCol string, e Endpoint, where []string, args []any) ([]string, []any) {
	if e.Workload != "" {
		where = append(where, wlCol+" = ?")
		args = append(args, e.Workload)
	}
	if e.Prefix.IsValid() {
		p := e.Prefix.Masked()
		if p.IsSingleIP() {
			where = append(where, col+" = ?")
			args = append(args, addrKey(p.Addr()))
		} else {
			where = append(where, col+" BETWEEN ? AND ?")
			args = append(args, addrKey(p.Addr()), addrKey(lastAddr(p)))
		}
	}
	return where, args
}

// Query returns matching records, most recently seen first.
func (s *SQLite) Query(ctx context.Context, f Filter) ([]flow.Record, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("flowstore: limit %d: %w", f.Limit, ErrInvalid)
	}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	f.Limit = min(f.Limit, MaxLimit)
	where, args := filterWhere(f)
	q := "SELECT " + columns + " FROM flows" + where + " ORDER BY seen_ns DESC LIMIT ?"
	args = append(args, f.Limit)
	var out []flow.Record
	err := s.each(ctx, q, args, func(r *flow.Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// Scan calls fn for every record f selects, in no particular order and
// without f's limit (which it ignores). The record is reused between calls:
// fn copies what it keeps. An error from fn stops the scan and is returned.
func (s *SQLite) Scan(ctx context.Context, f Filter, fn func(*flow.Record) error) error {
	where, args := filterWhere(f)
	return s.each(ctx, "SELECT "+columns+" FROM flows"+where, args, fn)
}

// filterWhere is f as a WHERE clause (with its leading space, or empty) and
// its arguments. The limit is not part of it.
func filterWhere(f Filter) (string, []any) {
	var (
		where []string
		args  []any
	)
	where, args = endpointWhere("src", "src_wl", f.From, where, args)
	where, args = endpointWhere("dst", "dst_wl", f.To, where, args)
	if f.Host != "" {
		where = append(where, "host = ?")
		args = append(args, f.Host)
	}
	if f.Kind != 0 {
		where = append(where, "kind = ?")
		args = append(args, int64(f.Kind))
	}
	if f.Verdict != 0 {
		where = append(where, "verdict = ?")
		args = append(args, int64(f.Verdict))
	}
	if f.NoMirrors {
		where = append(where, "mirror = 0")
	}
	if f.User != "" {
		where = append(where, "user = ?")
		args = append(args, f.User)
	}
	if f.App != "" {
		where = append(where, "app = ?")
		args = append(args, f.App)
	}
	if f.StagedRuleID != 0 {
		where = append(where, "staged_rule = ?")
		args = append(args, int64(f.StagedRuleID))
	}
	if f.RuleID != 0 {
		where = append(where, "rule_id = ?")
		args = append(args, int64(f.RuleID))
	}
	if !f.Since.IsZero() {
		where = append(where, "seen_ns >= ?")
		args = append(args, nanos(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "start_ns < ?")
		args = append(args, nanos(f.Until))
	}
	if f.Proto != 0 {
		where = append(where, "proto = ?")
		args = append(args, int64(f.Proto))
	}
	if f.Port != 0 {
		where = append(where, "dst_port = ?")
		args = append(args, int64(f.Port))
	}
	if len(where) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(where, " AND "), args
}

// each runs q and calls fn with every row as a record.
func (s *SQLite) each(ctx context.Context, q string, args []any, fn func(*flow.Record) error) error {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("flowstore: query: %w", err)
	}
	defer rows.Close()
	var r flow.Record
	for rows.Next() {
		var (
			kind, proto, sport, dport, itype, icode      int64
			sb, sp, db, dp, start, end, seen, rule, verd int64
			staged                                       int64
			src, dst                                     []byte
		)
		r = flow.Record{}
		if err := rows.Scan(&r.ID, &kind, &r.Host, &src, &dst, &proto, &sport, &dport, &itype, &icode, &r.SrcWorkload, &r.DstWorkload,
			&sb, &sp, &db, &dp, &start, &end, &seen, &rule, &verd, &staged, &r.Mirror, &r.User,
			&r.App, &r.TLSVersion, &r.ServerName); err != nil {
			return fmt.Errorf("flowstore: query: %w", err)
		}
		r.Kind, r.Verdict = flow.Kind(kind), flow.Verdict(verd)
		r.Src, r.Dst = addrFromKey(src), addrFromKey(dst)
		r.Proto, r.SrcPort, r.DstPort, r.ICMPType, r.ICMPCode = uint8(proto), uint16(sport), uint16(dport), uint8(itype), uint8(icode)
		r.SrcBytes, r.SrcPackets, r.DstBytes, r.DstPackets = uint64(sb), uint64(sp), uint64(db), uint64(dp)
		r.Start, r.End, r.Seen = fromNanos(start), fromNanos(end), fromNanos(seen)
		r.RuleID, r.StagedRuleID = uint32(rule), uint32(staged)
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("flowstore: query: %w", err)
	}
	return nil
}

// pruneChunk bounds one delete transaction, so that ingest waits at most
// one chunk for the write lock.
const pruneChunk = 20000

// Prune deletes records seen before now-MaxAge, then the oldest beyond
// MaxRows, in chunks.
func (s *SQLite) Prune(ctx context.Context, r Retention) (int64, error) {
	var total int64
	if r.MaxAge > 0 {
		cut := time.Now().Add(-r.MaxAge).UnixNano()
		n, err := s.deleteBefore(ctx, cut)
		total += n
		if err != nil {
			return total, err
		}
	}
	if r.MaxRows > 0 {
		// The seen time of the MaxRows-th newest record; everything
		// older goes.
		var cut int64
		err := s.r.QueryRowContext(ctx, "SELECT seen_ns FROM flows ORDER BY seen_ns DESC LIMIT 1 OFFSET ?", r.MaxRows-1).Scan(&cut)
		if errors.Is(err, sql.ErrNoRows) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("flowstore: prune to %d rows: %w", r.MaxRows, err)
		}
		n, err := s.deleteBefore(ctx, cut)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *SQLite) deleteBefore(ctx context.Context, cut int64) (int64, error) {
	var total int64
	for {
		res, err := s.w.ExecContext(ctx, "DELETE FROM flows WHERE fid IN (SELECT fid FROM flows WHERE seen_ns < ? ORDER BY seen_ns LIMIT ?)", cut, pruneChunk)
		if err != nil {
			return total, fmt.Errorf("flowstore: prune records seen before %s: %w", fromNanos(cut).Format(time.RFC3339), err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

func (s *SQLite) pruneLoop(r Retention, every time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			n, err := s.Prune(ctx, r)
			if err != nil {
				s.log.Warn("flowstore: prune failed", "err", err)
			} else if n > 0 {
				s.log.Debug("flowstore: pruned", "records", n)
			}
			// Alerts: the flows' age, their own row cap (alerts.go).
			n, err = s.PruneAlerts(ctx, Retention{MaxAge: r.MaxAge, MaxRows: MaxAlertRows})
			cancel()
			if err != nil {
				s.log.Warn("flowstore: prune alerts failed", "err", err)
			} else if n > 0 {
				s.log.Debug("flowstore: pruned", "alerts", n)
			}
		}
	}
}
