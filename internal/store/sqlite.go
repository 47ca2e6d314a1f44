package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"

	_ "modernc.org/sqlite" // registers driver "sqlite"
)

// SQLite is the embedded Store: one database file in the manager's data
// directory, in WAL mode so that readers never wait for the writer.
type SQLite struct {
	// w has a single connection: writers queue in-process instead of
	// spinning on SQLITE_BUSY, and every write transaction starts with
	// BEGIN IMMEDIATE so that a second process waits (busy timeout) at
	// BEGIN rather than failing at its first write.
	w *sql.DB
	// r serves reads; its connections are query-only.
	r    *sql.DB
	path string
	now  func() time.Time

	// hook, when set by a test, is called at each step of Commit; an
	// error aborts the commit there.
	hook func(step string) error
}

var _ Store = (*SQLite)(nil)

// busyTimeout is how long a write waits for another process's transaction.
const busyTimeout = 5 * time.Second

// OpenSQLite opens (creating if needed) the database file at path and brings
// its schema up to date.
func OpenSQLite(path string, opts ...Option) (*SQLite, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// The file holds token hashes and the audit log: keep it private.
	// SQLite gives the -wal and -shm files the mode of the database.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	f.Close()

	base := (&url.URL{Scheme: "file", Path: abs}).String()
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeout.Milliseconds())
	w, err := sql.Open("sqlite", base+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	s := &SQLite{w: w, path: path, now: o.now}
	ctx := context.Background()
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("store: open %s: journal mode is %q, want wal: %v", path, mode, err)
	}
	if err := Migrate(ctx, w, sqliteMigrations); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", base+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s.r = r
	return s, nil
}

// Migrate brings a SQLite schema to len(steps) in one transaction, so a
// failed step leaves the previous version intact; PRAGMA user_version counts
// the steps a database has had. The flow store uses it too.
func Migrate(ctx context.Context, db *sql.DB, steps []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if v > len(steps) {
		return fmt.Errorf("migrate: schema version %d is newer than this release knows (%d)", v, len(steps))
	}
	if v == len(steps) {
		return nil
	}
	for i := v; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("migrate to schema %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no parameters; the value is an int we formatted.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(steps))); err != nil {
		return fmt.Errorf("migrate to schema %d: set version: %w", len(steps), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate to schema %d: %w", len(steps), err)
	}
	return nil
}

// Close closes the database. The last close checkpoints the WAL into the
// main file.
func (s *SQLite) Close() error {
	rerr := s.r.Close()
	werr := s.w.Close()
	if err := errors.Join(rerr, werr); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

func (s *SQLite) step(name string) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(name)
}

func toNanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func emptyRevision() *Revision {
	return &Revision{Set: policy.NewSet()}
}

const revisionColumns = "number, author, time_ns, summary, rollback_to, encoding, body"

func scanRevision(row *sql.Row) (*Revision, error) {
	var (
		rev      Revision
		ns       int64
		rollback sql.NullInt64
		encoding string
		body     []byte
	)
	if err := row.Scan(&rev.Number, &rev.Author, &ns, &rev.Summary, &rollback, &encoding, &body); err != nil {
		return nil, err
	}
	rev.Time = fromNanos(ns)
	rev.Rollback = rollback.Int64
	set, err := decodeSet(body, encoding)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	rev.Set = set
	return &rev, nil
}

// Latest returns the newest revision, or revision 0 (policy.NewSet()).
func (s *SQLite) Latest(ctx context.Context) (*Revision, error) {
	rev, err := scanRevision(s.r.QueryRowContext(ctx,
		"SELECT "+revisionColumns+" FROM revisions ORDER BY number DESC LIMIT 1"))
	if errors.Is(err, sql.ErrNoRows) {
		return emptyRevision(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: load latest revision: %w", err)
	}
	return rev, nil
}

// Revision returns revision n; 0 is the empty set.
func (s *SQLite) Revision(ctx context.Context, n int64) (*Revision, error) {
	if n == 0 {
		return emptyRevision(), nil
	}
	rev, err := scanRevision(s.r.QueryRowContext(ctx,
		"SELECT "+revisionColumns+" FROM revisions WHERE number = ?", n))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: load revision %d: %w", n, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: load revision %d: %w", n, err)
	}
	return rev, nil
}

// Revisions lists revisions newest first; limit <= 0 lists all.
func (s *SQLite) Revisions(ctx context.Context, limit int) ([]RevisionInfo, error) {
	q := "SELECT number, author, time_ns, summary, rollback_to FROM revisions ORDER BY number DESC"
	var args []any
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list revisions: %w", err)
	}
	defer rows.Close()
	var out []RevisionInfo
	for rows.Next() {
		var (
			ri       RevisionInfo
			ns       int64
			rollback sql.NullInt64
		)
		if err := rows.Scan(&ri.Number, &ri.Author, &ns, &ri.Summary, &rollback); err != nil {
			return nil, fmt.Errorf("store: list revisions: %w", err)
		}
		ri.Time = fromNanos(ns)
		ri.Rollback = rollback.Int64
		out = append(out, ri)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list revisions: %w", err)
	}
	return out, nil
}

func nullIfZero(n int64) sql.NullInt64 { return sql.NullInt64{Int64: n, Valid: n != 0} }

// Commit writes c in one transaction: the new revision, workload upserts and
// deletes (in that order), and the audit entries.
func (s *SQLite) Commit(ctx context.Context, c Commit) (int64, error) {
	op := "store: commit"
	if c.Set != nil {
		op = fmt.Sprintf("store: commit revision %d", c.Base+1)
	}
	if c.Base < 0 {
		return 0, fmt.Errorf("%s: base %d: %w", op, c.Base, ErrInvalid)
	}
	if c.Set == nil && c.Rollback != 0 {
		return 0, fmt.Errorf("%s: rollback to %d without a set: %w", op, c.Rollback, ErrInvalid)
	}
	if c.Rollback < 0 || (c.Set != nil && c.Rollback > c.Base) {
		return 0, fmt.Errorf("%s: rollback to %d: %w", op, c.Rollback, ErrNotFound)
	}

	// Serialise before taking the write lock: for a large set this is
	// most of the work, and readers and other writers need not wait on it.
	var (
		body     []byte
		encoding string
	)
	if c.Set != nil {
		var err error
		if body, encoding, err = encodeSet(c.Set); err != nil {
			return 0, fmt.Errorf("%s: encode set: %w", op, err)
		}
	}
	workloads := make([][]byte, len(c.UpsertWorkloads))
	for i, w := range c.UpsertWorkloads {
		if w == nil || w.Metadata.Name == "" {
			return 0, fmt.Errorf("%s: upsert workload #%d: no name: %w", op, i, ErrInvalid)
		}
		b, err := json.Marshal(w)
		if err != nil {
			return 0, fmt.Errorf("%s: encode workload %q: %w", op, w.Metadata.Name, err)
		}
		workloads[i] = b
	}
	for i, a := range c.Audit {
		if a.Action == "" {
			return 0, fmt.Errorf("%s: audit entry #%d: no action: %w", op, i, ErrInvalid)
		}
	}

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()

	var latest int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(number), 0) FROM revisions").Scan(&latest); err != nil {
		return 0, fmt.Errorf("%s: read latest: %w", op, err)
	}
	now := s.now()
	if c.Set != nil {
		if latest != c.Base {
			return 0, fmt.Errorf("%s: based on %d but latest is %d: %w", op, c.Base, latest, ErrConflict)
		}
		if err := s.step("revision"); err != nil {
			return 0, fmt.Errorf("%s: %w", op, err)
		}
		latest = c.Base + 1
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO revisions ("+revisionColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
			latest, c.Author, toNanos(now), c.Summary, nullIfZero(c.Rollback), encoding, body); err != nil {
			return 0, fmt.Errorf("%s: insert revision: %w", op, err)
		}
	}

	for i, w := range c.UpsertWorkloads {
		if err := s.step("workload"); err != nil {
			return 0, fmt.Errorf("%s: upsert workload %q: %w", op, w.Metadata.Name, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO workloads (name, body, updated_ns) VALUES (?, ?, ?)
			 ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_ns = excluded.updated_ns`,
			w.Metadata.Name, workloads[i], toNanos(now)); err != nil {
			return 0, fmt.Errorf("%s: upsert workload %q: %w", op, w.Metadata.Name, err)
		}
	}
	if len(c.UpsertWorkloads)+len(c.DeleteWorkloads) > 0 {
		// One number that moves with every inventory change, in the same
		// transaction, so readers can cache what they derive from the
		// inventory without reading it.
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO meta (key, value) VALUES (?, '1')
			 ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)`, metaInventoryVersion); err != nil {
			return 0, fmt.Errorf("%s: bump inventory version: %w", op, err)
		}
	}
	for _, name := range c.DeleteWorkloads {
		res, err := tx.ExecContext(ctx, "DELETE FROM workloads WHERE name = ?", name)
		if err != nil {
			return 0, fmt.Errorf("%s: delete workload %q: %w", op, name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, fmt.Errorf("%s: delete workload %q: %w", op, name, err)
		} else if n == 0 {
			return 0, fmt.Errorf("%s: delete workload %q: %w", op, name, ErrNotFound)
		}
	}

	for i, a := range c.Audit {
		if err := s.step("audit"); err != nil {
			return 0, fmt.Errorf("%s: audit entry #%d (%s %s): %w", op, i, a.Action, a.Object, err)
		}
		rev := a.Revision
		if rev == 0 && c.Set != nil {
			rev = latest
		}
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO audit (time_ns, actor, action, object, revision, diff) VALUES (?, ?, ?, ?, ?, ?)",
			toNanos(now), a.Actor, a.Action, a.Object, nullIfZero(rev), a.Diff); err != nil {
			return 0, fmt.Errorf("%s: audit entry #%d (%s %s): %w", op, i, a.Action, a.Object, err)
		}
	}

	if err := s.step("commit"); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	return latest, nil
}

// NextRuleIDs reserves n consecutive rule ids and returns the first.
func (s *SQLite) NextRuleIDs(ctx context.Context, n int) (uint32, error) {
	if n <= 0 {
		return 0, fmt.Errorf("store: reserve %d rule ids: %w", n, ErrInvalid)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: reserve %d rule ids: %w", n, err)
	}
	defer tx.Rollback()
	var next int64
	if err := tx.QueryRowContext(ctx, "SELECT next FROM sequences WHERE name = 'rule_id'").Scan(&next); err != nil {
		return 0, fmt.Errorf("store: reserve %d rule ids: %w", n, err)
	}
	if next < int64(FirstRuleID) || next+int64(n)-1 > math.MaxUint32 {
		return 0, fmt.Errorf("store: reserve %d rule ids from %d: %w", n, next, ErrExhausted)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sequences SET next = ? WHERE name = 'rule_id'", next+int64(n)); err != nil {
		return 0, fmt.Errorf("store: reserve %d rule ids: %w", n, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: reserve %d rule ids: %w", n, err)
	}
	return uint32(next), nil
}

// Workloads lists the inventory ordered by name.
func (s *SQLite) Workloads(ctx context.Context) ([]*policy.Workload, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT name, body FROM workloads ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list workloads: %w", err)
	}
	defer rows.Close()
	var out []*policy.Workload
	for rows.Next() {
		var (
			name string
			body []byte
		)
		if err := rows.Scan(&name, &body); err != nil {
			return nil, fmt.Errorf("store: list workloads: %w", err)
		}
		w := new(policy.Workload)
		if err := json.Unmarshal(body, w); err != nil {
			return nil, fmt.Errorf("store: list workloads: decode %q: %w", name, err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list workloads: %w", err)
	}
	return out, nil
}

// Workload returns one workload by name.
func (s *SQLite) Workload(ctx context.Context, name string) (*policy.Workload, error) {
	var body []byte
	err := s.r.QueryRowContext(ctx, "SELECT body FROM workloads WHERE name = ?", name).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: load workload %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: load workload %q: %w", name, err)
	}
	w := new(policy.Workload)
	if err := json.Unmarshal(body, w); err != nil {
		return nil, fmt.Errorf("store: load workload %q: decode: %w", name, err)
	}
	return w, nil
}

// AuditLog returns the entries f selects, newest first.
func (s *SQLite) AuditLog(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var (
		where []string
		args  []any
	)
	if !f.Since.IsZero() {
		where = append(where, "time_ns >= ?")
		args = append(args, toNanos(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "time_ns < ?")
		args = append(args, toNanos(f.Until))
	}
	if f.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, f.Actor)
	}
	if f.Action != "" {
		where = append(where, "action = ?")
		args = append(args, f.Action)
	}
	if f.Object != "" {
		where = append(where, "object = ?")
		args = append(args, f.Object)
	}
	q := "SELECT id, time_ns, actor, action, object, revision, diff FROM audit"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY time_ns DESC, id DESC"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var (
			e   AuditEntry
			ns  int64
			rev sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &ns, &e.Actor, &e.Action, &e.Object, &rev, &e.Diff); err != nil {
			return nil, fmt.Errorf("store: read audit log: %w", err)
		}
		e.Time = fromNanos(ns)
		e.Revision = rev.Int64
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", err)
	}
	return out, nil
}

// CreateToken makes a token and returns its secret, which is not kept.
func (s *SQLite) CreateToken(ctx context.Context, name, role string, ttl time.Duration) (string, Token, error) {
	op := fmt.Sprintf("store: create token %q", name)
	if name == "" {
		return "", Token{}, fmt.Errorf("%s: no name: %w", op, ErrInvalid)
	}
	if !ValidRole(role) {
		return "", Token{}, fmt.Errorf("%s: role %q is not one of %s: %w", op, role, strings.Join(Roles, ", "), ErrInvalid)
	}
	if ttl < 0 {
		return "", Token{}, fmt.Errorf("%s: negative ttl %s: %w", op, ttl, ErrInvalid)
	}
	secret, err := newTokenSecret()
	if err != nil {
		return "", Token{}, fmt.Errorf("%s: %w", op, err)
	}
	id, err := newTokenID()
	if err != nil {
		return "", Token{}, fmt.Errorf("%s: %w", op, err)
	}
	now := s.now()
	t := Token{ID: id, Name: name, Role: role, Created: fromNanos(toNanos(now))}
	var expires sql.NullInt64
	if ttl > 0 {
		t.Expires = fromNanos(toNanos(now.Add(ttl)))
		expires = sql.NullInt64{Int64: toNanos(t.Expires), Valid: true}
	}
	if _, err := s.w.ExecContext(ctx,
		"INSERT INTO tokens (id, name, role, hash, created_ns, expires_ns) VALUES (?, ?, ?, ?, ?, ?)",
		id, name, role, hashSecret(secret), toNanos(t.Created), expires); err != nil {
		return "", Token{}, fmt.Errorf("%s: %w", op, err)
	}
	return secret, t, nil
}

const tokenColumns = "id, name, role, created_ns, expires_ns"

type scanner interface{ Scan(dest ...any) error }

func scanToken(row scanner, extra ...any) (Token, error) {
	var (
		t       Token
		created int64
		expires sql.NullInt64
	)
	if err := row.Scan(append([]any{&t.ID, &t.Name, &t.Role, &created, &expires}, extra...)...); err != nil {
		return Token{}, err
	}
	t.Created = fromNanos(created)
	if expires.Valid {
		t.Expires = fromNanos(expires.Int64)
	}
	return t, nil
}

// LookupToken returns the token whose secret this is, unless it expired.
func (s *SQLite) LookupToken(ctx context.Context, secret string) (Token, error) {
	if !wellFormedSecret(secret) {
		return Token{}, fmt.Errorf("store: lookup token: malformed secret: %w", ErrNotFound)
	}
	want := hashSecret(secret)
	var stored []byte
	t, err := scanToken(s.r.QueryRowContext(ctx,
		"SELECT "+tokenColumns+", hash FROM tokens WHERE hash = ?", want), &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("store: lookup token: %w", ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("store: lookup token: %w", err)
	}
	// The index found the row; compare again in constant time so that
	// nothing about the stored hash depends on how a comparison exits.
	if subtle.ConstantTimeCompare(stored, want) != 1 {
		return Token{}, fmt.Errorf("store: lookup token: %w", ErrNotFound)
	}
	if t.Expired(s.now()) {
		return Token{}, fmt.Errorf("store: lookup token %s: expired at %s: %w", t.ID, t.Expires.Format(time.RFC3339), ErrNotFound)
	}
	return t, nil
}

// Tokens lists every token, oldest first.
func (s *SQLite) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+tokenColumns+" FROM tokens ORDER BY created_ns, id")
	if err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", err)
	}
	return out, nil
}

// DeleteToken removes a token by ID.
func (s *SQLite) DeleteToken(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, "DELETE FROM tokens WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("store: delete token %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: delete token %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: delete token %s: %w", id, ErrNotFound)
	}
	return nil
}

// Meta returns the value stored under key.
func (s *SQLite) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("store: read meta %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("store: read meta %q: %w", key, err)
	}
	return v, nil
}

// SetMeta stores value under key.
func (s *SQLite) SetMeta(ctx context.Context, key, value string) error {
	if key == "" {
		return fmt.Errorf("store: write meta: empty key: %w", ErrInvalid)
	}
	if _, err := s.w.ExecContext(ctx,
		"INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
		key, value); err != nil {
		return fmt.Errorf("store: write meta %q: %w", key, err)
	}
	return nil
}

// metaInventoryVersion is the Meta key of the inventory version.
const metaInventoryVersion = "inventory_version"

// InventoryVersion is a number that changes with every commit that upserts
// or deletes workloads; 0 before the first.
func (s *SQLite) InventoryVersion(ctx context.Context) (int64, error) {
	v, err := s.Meta(ctx, metaInventoryVersion)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("store: inventory version %q: %w", v, err)
	}
	return n, nil
}
