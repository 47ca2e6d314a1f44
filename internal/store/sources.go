package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead/bulkhead/internal/inventory"
)

// Source is a configured inventory source that the manager syncs.
type Source struct {
	Name     string
	Kind     inventory.Kind
	URL      string
	User     string
	Password string // never leaves the manager
	Insecure bool
	Interval time.Duration
	Created  time.Time
	// LastSync is zero before the first attempt; LastError is "" after a
	// successful one.
	LastSync  time.Time
	LastError string
}

// InventoryChange is one atomic change of a source's records together
// with the workload changes and audit entries they lead to.
type InventoryChange struct {
	Source string
	// Records are upserted by (Source, Key); each must belong to Source.
	Records []inventory.Record
	// Replace deletes the source's records not in Records (a full sync).
	Replace bool
	// DeleteSource removes the configured source and all its records.
	DeleteSource bool
	// Commit holds the inventory changes; it must not carry a policy Set.
	Commit Commit
}

// SourceStore keeps inventory records and configured sources. *SQLite
// implements it.
type SourceStore interface {
	// SourceRecords lists the records of one source, or of all when
	// source is "", by source then key.
	SourceRecords(ctx context.Context, source string) ([]inventory.Record, error)
	// ApplyInventory writes c in one transaction.
	ApplyInventory(ctx context.Context, c InventoryChange) error

	// Sources lists the configured sources by name.
	Sources(ctx context.Context) ([]Source, error)
	// Source returns one; ErrNotFound if unknown.
	Source(ctx context.Context, name string) (Source, error)
	// CreateSource adds a source; ErrConflict if the name is taken.
	CreateSource(ctx context.Context, src Source) (Source, error)
	// RecordSync notes a sync attempt of a source: its time and error.
	RecordSync(ctx context.Context, name string, at time.Time, syncErr string) error
}

var _ SourceStore = (*SQLite)(nil)

// recordBody is what a record stores besides its indexed columns.
type recordBody struct {
	IPs   []string          `json:"ips,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	Attrs map[string]string `json:"attrs,omitempty"`
}

// SourceRecords lists records by source then key.
func (s *SQLite) SourceRecords(ctx context.Context, source string) ([]inventory.Record, error) {
	q := "SELECT source, key, kind, name, body, observed_ns FROM inventory_records"
	var args []any
	if source != "" {
		q += " WHERE source = ?"
		args = append(args, source)
	}
	rows, err := s.r.QueryContext(ctx, q+" ORDER BY source, key", args...)
	if err != nil {
		return nil, fmt.Errorf("store: list inventory records: %w", err)
	}
	defer rows.Close()
	var out []inventory.Record
	for rows.Next() {
		var (
			r    inventory.Record
			body []byte
			ns   int64
		)
		if err := rows.Scan(&r.Source, &r.Key, &r.Kind, &r.Name, &body, &ns); err != nil {
			return nil, fmt.Errorf("store: list inventory records: %w", err)
		}
		var b recordBody
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, fmt.Errorf("store: list inventory records: %s/%s: %w", r.Source, r.Key, err)
		}
		r.IPs, r.Tags, r.Attrs, r.Observed = b.IPs, b.Tags, b.Attrs, fromNanos(ns)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list inventory records: %w", err)
	}
	return out, nil
}

// ApplyInventory writes the records, then the workload upserts, deletes
// and audit entries, in one transaction.
func (s *SQLite) ApplyInventory(ctx context.Context, c InventoryChange) error {
	op := fmt.Sprintf("store: inventory of source %q", c.Source)
	if c.Source == "" {
		return fmt.Errorf("%s: no source: %w", op, ErrInvalid)
	}
	if c.Commit.Set != nil {
		return fmt.Errorf("%s: a policy set cannot change with inventory: %w", op, ErrInvalid)
	}
	bodies := make([][]byte, len(c.Records))
	for i, r := range c.Records {
		if r.Source != c.Source || r.Key == "" || r.Name == "" || !inventory.ValidKind(r.Kind) {
			return fmt.Errorf("%s: record #%d (%s/%s %q, kind %q): %w", op, i, r.Source, r.Key, r.Name, r.Kind, ErrInvalid)
		}
		b, err := json.Marshal(recordBody{IPs: r.IPs, Tags: r.Tags, Attrs: r.Attrs})
		if err != nil {
			return fmt.Errorf("%s: encode record %s: %w", op, r.Key, err)
		}
		bodies[i] = b
	}
	workloads := make([][]byte, len(c.Commit.UpsertWorkloads))
	for i, w := range c.Commit.UpsertWorkloads {
		if w == nil || w.Metadata.Name == "" {
			return fmt.Errorf("%s: upsert workload #%d: no name: %w", op, i, ErrInvalid)
		}
		b, err := json.Marshal(w)
		if err != nil {
			return fmt.Errorf("%s: encode workload %q: %w", op, w.Metadata.Name, err)
		}
		workloads[i] = b
	}
	for i, a := range c.Commit.Audit {
		if a.Action == "" {
			return fmt.Errorf("%s: audit entry #%d: no action: %w", op, i, ErrInvalid)
		}
	}

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	now := toNanos(s.now())
	if c.Replace || c.DeleteSource {
		if _, err := tx.ExecContext(ctx, "DELETE FROM inventory_records WHERE source = ?", c.Source); err != nil {
			return fmt.Errorf("%s: replace records: %w", op, err)
		}
	}
	if c.DeleteSource {
		if _, err := tx.ExecContext(ctx, "DELETE FROM inventory_sources WHERE name = ?", c.Source); err != nil {
			return fmt.Errorf("%s: delete source: %w", op, err)
		}
	} else {
		for i, r := range c.Records {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO inventory_records (source, key, kind, name, body, observed_ns, seen_ns) VALUES (?, ?, ?, ?, ?, ?, ?)
				 ON CONFLICT (source, key) DO UPDATE SET kind = excluded.kind, name = excluded.name, body = excluded.body,
				 observed_ns = excluded.observed_ns, seen_ns = excluded.seen_ns`,
				r.Source, r.Key, string(r.Kind), r.Name, bodies[i], toNanos(r.Observed), now); err != nil {
				return fmt.Errorf("%s: write record %s: %w", op, r.Key, err)
			}
		}
	}
	for i, w := range c.Commit.UpsertWorkloads {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO workloads (name, body, updated_ns) VALUES (?, ?, ?)
			 ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_ns = excluded.updated_ns`,
			w.Metadata.Name, workloads[i], now); err != nil {
			return fmt.Errorf("%s: upsert workload %q: %w", op, w.Metadata.Name, err)
		}
	}
	for _, name := range c.Commit.DeleteWorkloads {
		res, err := tx.ExecContext(ctx, "DELETE FROM workloads WHERE name = ?", name)
		if err != nil {
			return fmt.Errorf("%s: delete workload %q: %w", op, name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("%s: delete workload %q: %w", op, name, err)
		} else if n == 0 {
			return fmt.Errorf("%s: delete workload %q: %w", op, name, ErrNotFound)
		}
	}
	if len(c.Commit.UpsertWorkloads)+len(c.Commit.DeleteWorkloads) > 0 {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO meta (key, value) VALUES (?, '1')
			 ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)`, metaInventoryVersion); err != nil {
			return fmt.Errorf("%s: bump inventory version: %w", op, err)
		}
	}
	for i, a := range c.Commit.Audit {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO audit (time_ns, actor, action, object, revision, diff) VALUES (?, ?, ?, ?, ?, ?)",
			now, a.Actor, a.Action, a.Object, nullIfZero(a.Revision), a.Diff); err != nil {
			return fmt.Errorf("%s: audit entry #%d (%s %s): %w", op, i, a.Action, a.Object, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

const sourceColumns = "name, kind, url, user, password, insecure, interval_ns, created_ns, last_sync_ns, last_error"

func scanSource(row scanner) (Source, error) {
	var (
		src      Source
		interval int64
		created  int64
		last     sql.NullInt64
	)
	if err := row.Scan(&src.Name, &src.Kind, &src.URL, &src.User, &src.Password, &src.Insecure, &interval, &created, &last, &src.LastError); err != nil {
		return Source{}, err
	}
	src.Interval = time.Duration(interval)
	src.Created = fromNanos(created)
	if last.Valid {
		src.LastSync = fromNanos(last.Int64)
	}
	return src, nil
}

// Sources lists the configured sources by name.
func (s *SQLite) Sources(ctx context.Context) ([]Source, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+sourceColumns+" FROM inventory_sources ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list sources: %w", err)
	}
	defer rows.Close()
	var out []Source
	for rows.Next() {
		src, err := scanSource(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list sources: %w", err)
		}
		out = append(out, src)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list sources: %w", err)
	}
	return out, nil
}

// Source returns one configured source.
func (s *SQLite) Source(ctx context.Context, name string) (Source, error) {
	src, err := scanSource(s.r.QueryRowContext(ctx, "SELECT "+sourceColumns+" FROM inventory_sources WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return Source{}, fmt.Errorf("store: source %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Source{}, fmt.Errorf("store: source %q: %w", name, err)
	}
	return src, nil
}

// CreateSource adds a source; the name must be free, also of imported
// records (a CMDB import under that name).
func (s *SQLite) CreateSource(ctx context.Context, src Source) (Source, error) {
	op := fmt.Sprintf("store: create source %q", src.Name)
	if src.Name == "" || !inventory.ValidKind(src.Kind) || src.Interval < 0 {
		return Source{}, fmt.Errorf("%s (kind %q, interval %s): %w", op, src.Kind, src.Interval, ErrInvalid)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Source{}, fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx,
		"SELECT (SELECT COUNT(*) FROM inventory_sources WHERE name = ?) + (SELECT COUNT(*) FROM inventory_records WHERE source = ?)",
		src.Name, src.Name).Scan(&n); err != nil {
		return Source{}, fmt.Errorf("%s: %w", op, err)
	}
	if n > 0 {
		return Source{}, fmt.Errorf("%s: the name is taken: %w", op, ErrConflict)
	}
	src.Created = fromNanos(toNanos(s.now()))
	src.LastSync, src.LastError = time.Time{}, ""
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO inventory_sources (name, kind, url, user, password, insecure, interval_ns, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		src.Name, string(src.Kind), src.URL, src.User, src.Password, src.Insecure, int64(src.Interval), toNanos(src.Created)); err != nil {
		return Source{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return Source{}, fmt.Errorf("%s: %w", op, err)
	}
	return src, nil
}

// RecordSync notes a sync attempt.
func (s *SQLite) RecordSync(ctx context.Context, name string, at time.Time, syncErr string) error {
	res, err := s.w.ExecContext(ctx, "UPDATE inventory_sources SET last_sync_ns = ?, last_error = ? WHERE name = ?", toNanos(at), syncErr, name)
	if err != nil {
		return fmt.Errorf("store: record sync of %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: record sync of %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("store: record sync of %q: %w", name, ErrNotFound)
	}
	return nil
}
