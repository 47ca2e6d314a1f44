package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// SignatureSet is one version of an imported IDS rule file.
type SignatureSet struct {
	Name    string
	Version int64
	Created time.Time
	Author  string
	// SHA256 is the hex digest of the text.
	SHA256 string
	// Rules and Problems count the rules that loaded and those that did
	// not, as the manager's parser saw them at import.
	Rules, Problems int
}

// SignatureSetStore keeps IDS signature sets. *SQLite implements it.
type SignatureSetStore interface {
	// PutSignatureSet stores text as the next version of set.Name (1 for
	// a new name) with the audit entries, in one transaction, and returns
	// the stored set with its version, time and digest.
	PutSignatureSet(ctx context.Context, set SignatureSet, text []byte, audit []AuditEntry) (SignatureSet, error)
	// SignatureSets lists the live sets (latest version of each name that
	// was not deleted), by name.
	SignatureSets(ctx context.Context) ([]SignatureSet, error)
	// SignatureSetText returns the text of one version; ErrNotFound if
	// there is no such version.
	SignatureSetText(ctx context.Context, name string, version int64) ([]byte, error)
	// DeleteSignatureSet retires a set with the audit entries;
	// ErrNotFound if no live set has the name.
	DeleteSignatureSet(ctx context.Context, name string, audit []AuditEntry) error
}

var _ SignatureSetStore = (*SQLite)(nil)

// gzipText compresses a rule file. Rule files compress about 6:1.
func gzipText(text []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzipLevel)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(text); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func checkAudit(op string, audit []AuditEntry) error {
	for i, a := range audit {
		if a.Action == "" {
			return fmt.Errorf("%s: audit entry #%d: no action: %w", op, i, ErrInvalid)
		}
	}
	return nil
}

// PutSignatureSet stores a new version of a set.
func (s *SQLite) PutSignatureSet(ctx context.Context, set SignatureSet, text []byte, audit []AuditEntry) (SignatureSet, error) {
	op := fmt.Sprintf("store: signature set %q", set.Name)
	if set.Name == "" {
		return SignatureSet{}, fmt.Errorf("store: signature set without a name: %w", ErrInvalid)
	}
	if err := checkAudit(op, audit); err != nil {
		return SignatureSet{}, err
	}
	sum := sha256.Sum256(text)
	set.SHA256 = hex.EncodeToString(sum[:])
	body, err := gzipText(text)
	if err != nil {
		return SignatureSet{}, fmt.Errorf("%s: compress: %w", op, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return SignatureSet{}, fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) + 1 FROM ids_signature_sets WHERE name = ?", set.Name).Scan(&set.Version); err != nil {
		return SignatureSet{}, fmt.Errorf("%s: next version: %w", op, err)
	}
	now := s.now()
	set.Created = fromNanos(toNanos(now))
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO ids_signature_sets (name, version, created_ns, author, sha256, rules, problems, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		set.Name, set.Version, toNanos(now), set.Author, set.SHA256, set.Rules, set.Problems, body); err != nil {
		return SignatureSet{}, fmt.Errorf("%s: write version %d: %w", op, set.Version, err)
	}
	if err := insertAudit(ctx, tx, toNanos(now), audit); err != nil {
		return SignatureSet{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return SignatureSet{}, fmt.Errorf("%s: %w", op, err)
	}
	return set, nil
}

// SignatureSets lists the live sets: for each name, its newest version,
// unless that version was deleted.
func (s *SQLite) SignatureSets(ctx context.Context) ([]SignatureSet, error) {
	rows, err := s.r.QueryContext(ctx, `
SELECT name, version, created_ns, author, sha256, rules, problems FROM ids_signature_sets AS a
WHERE deleted_ns IS NULL AND version = (SELECT MAX(version) FROM ids_signature_sets AS b WHERE b.name = a.name)
ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list signature sets: %w", err)
	}
	defer rows.Close()
	var out []SignatureSet
	for rows.Next() {
		var (
			set SignatureSet
			ns  int64
		)
		if err := rows.Scan(&set.Name, &set.Version, &ns, &set.Author, &set.SHA256, &set.Rules, &set.Problems); err != nil {
			return nil, fmt.Errorf("store: list signature sets: %w", err)
		}
		set.Created = fromNanos(ns)
		out = append(out, set)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list signature sets: %w", err)
	}
	return out, nil
}

// SignatureSetText returns the text of one version of a set.
func (s *SQLite) SignatureSetText(ctx context.Context, name string, version int64) ([]byte, error) {
	op := fmt.Sprintf("store: signature set %s@%d", name, version)
	var body []byte
	err := s.r.QueryRowContext(ctx, "SELECT body FROM ids_signature_sets WHERE name = ? AND version = ?", name, version).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return text, nil
}

// DeleteSignatureSet marks every version of a live set deleted.
func (s *SQLite) DeleteSignatureSet(ctx context.Context, name string, audit []AuditEntry) error {
	op := fmt.Sprintf("store: delete signature set %q", name)
	if err := checkAudit(op, audit); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	now := toNanos(s.now())
	res, err := tx.ExecContext(ctx, "UPDATE ids_signature_sets SET deleted_ns = ? WHERE name = ? AND deleted_ns IS NULL", now, name)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err := insertAudit(ctx, tx, now, audit); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
