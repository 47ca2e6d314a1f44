package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Refusals of a bootstrap token, beside ErrNotFound for one never issued.
var (
	ErrTokenUsed    = errors.New("bootstrap token already used")
	ErrTokenExpired = errors.New("bootstrap token expired")
	// ErrTokenHost is returned when a token issued for one host is
	// presented by another.
	ErrTokenHost = errors.New("bootstrap token is for another host")
)

// Host is an enrolled agent host: who it is (its client certificate) and
// what it last told the manager.
type Host struct {
	Name string
	// CertSerial (hex) and CertFingerprint (SHA-256 of the DER, hex)
	// identify the one client certificate the host may use.
	CertSerial      string
	CertFingerprint string
	Enrolled        time.Time
	// Revoked is zero unless the host's certificate was revoked; a revoked
	// host must enroll again with a new bootstrap token.
	Revoked time.Time
	HostStatus
}

// HostStatus is what a host's agent last reported.
type HostStatus struct {
	// LastSeen is zero until the agent first talked after enrolling.
	LastSeen time.Time
	// RealizedRevision and RealizedDigest name the desired state the
	// host's kernel holds.
	RealizedRevision int64
	RealizedDigest   []byte
	// LastError is why the latest apply failed, or "".
	LastError string
}

// BootstrapToken is a one-time enrollment token as stored: everything but the
// secret, of which only a SHA-256 hash is kept.
type BootstrapToken struct {
	ID string
	// Host is the only host that may enroll with the token, or "" for any.
	Host      string
	CreatedBy string
	Created   time.Time
	Expires   time.Time
	// Used is zero until a host enrolled with the token; UsedBy names it.
	Used   time.Time
	UsedBy string
}

// HostStore keeps agent hosts and their bootstrap tokens.
type HostStore interface {
	// CreateBootstrapToken makes a one-time token valid for ttl (> 0), for
	// host only unless host is "". The secret is returned once and never
	// stored.
	CreateBootstrapToken(ctx context.Context, host, createdBy string, ttl time.Duration) (secret string, t BootstrapToken, err error)
	// BootstrapTokens lists every token, used and expired ones included,
	// oldest first.
	BootstrapTokens(ctx context.Context) ([]BootstrapToken, error)
	// EnrollHost spends the token whose secret this is and records h (name,
	// certificate, enrollment time) in one transaction, replacing an earlier
	// enrollment of the same name. It fails with ErrNotFound for an unknown
	// secret, ErrTokenUsed, ErrTokenExpired or ErrTokenHost, and then spends
	// nothing.
	EnrollHost(ctx context.Context, secret string, h Host) (Host, error)
	// Host returns one host; ErrNotFound if it never enrolled.
	Host(ctx context.Context, name string) (Host, error)
	// Hosts lists every host, revoked ones included, by name.
	Hosts(ctx context.Context) ([]Host, error)
	// UpdateHostStatus replaces what the host last reported.
	UpdateHostStatus(ctx context.Context, name string, st HostStatus) error
	// RevokeHost marks the host's certificate revoked; ErrNotFound if
	// unknown.
	RevokeHost(ctx context.Context, name string) error
}

// bootstrapPrefix tells a bootstrap token from an API token ("bh_") at a
// glance and for secret scanners.
const bootstrapPrefix = "bhb_"

func newBootstrapSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return bootstrapPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func wellFormedBootstrapSecret(secret string) bool {
	rest, ok := strings.CutPrefix(secret, bootstrapPrefix)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(32) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: toNanos(t), Valid: true}
}

func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

// CreateBootstrapToken makes a one-time enrollment token.
func (s *SQLite) CreateBootstrapToken(ctx context.Context, host, createdBy string, ttl time.Duration) (string, BootstrapToken, error) {
	op := "store: create bootstrap token"
	if host != "" {
		op += " for host " + host
	}
	if ttl <= 0 {
		return "", BootstrapToken{}, fmt.Errorf("%s: ttl %s: a bootstrap token must expire: %w", op, ttl, ErrInvalid)
	}
	secret, err := newBootstrapSecret()
	if err != nil {
		return "", BootstrapToken{}, fmt.Errorf("%s: %w", op, err)
	}
	id, err := newTokenID()
	if err != nil {
		return "", BootstrapToken{}, fmt.Errorf("%s: %w", op, err)
	}
	now := fromNanos(toNanos(s.now()))
	t := BootstrapToken{ID: id, Host: host, CreatedBy: createdBy, Created: now, Expires: now.Add(ttl)}
	if _, err := s.w.ExecContext(ctx,
		"INSERT INTO bootstrap_tokens (id, hash, host, created_by, created_ns, expires_ns) VALUES (?, ?, ?, ?, ?, ?)",
		id, hashSecret(secret), host, createdBy, toNanos(t.Created), toNanos(t.Expires)); err != nil {
		return "", BootstrapToken{}, fmt.Errorf("%s: %w", op, err)
	}
	return secret, t, nil
}

const bootstrapColumns = "id, host, created_by, created_ns, expires_ns, used_ns, used_by"

func scanBootstrapToken(row scanner, extra ...any) (BootstrapToken, error) {
	var (
		t                BootstrapToken
		created, expires int64
		used             sql.NullInt64
		usedBy           sql.NullString
	)
	if err := row.Scan(append([]any{&t.ID, &t.Host, &t.CreatedBy, &created, &expires, &used, &usedBy}, extra...)...); err != nil {
		return BootstrapToken{}, err
	}
	t.Created, t.Expires, t.Used, t.UsedBy = fromNanos(created), fromNanos(expires), fromNullNanos(used), usedBy.String
	return t, nil
}

// BootstrapTokens lists every bootstrap token, oldest first.
func (s *SQLite) BootstrapTokens(ctx context.Context) ([]BootstrapToken, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+bootstrapColumns+" FROM bootstrap_tokens ORDER BY created_ns, id")
	if err != nil {
		return nil, fmt.Errorf("store: list bootstrap tokens: %w", err)
	}
	defer rows.Close()
	var out []BootstrapToken
	for rows.Next() {
		t, err := scanBootstrapToken(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list bootstrap tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list bootstrap tokens: %w", err)
	}
	return out, nil
}

// EnrollHost spends a bootstrap token and records the host, atomically.
func (s *SQLite) EnrollHost(ctx context.Context, secret string, h Host) (Host, error) {
	op := fmt.Sprintf("store: enroll host %q", h.Name)
	if h.Name == "" || h.CertSerial == "" || h.CertFingerprint == "" {
		return Host{}, fmt.Errorf("%s: name, certificate serial and fingerprint are required: %w", op, ErrInvalid)
	}
	if !wellFormedBootstrapSecret(secret) {
		return Host{}, fmt.Errorf("%s: malformed bootstrap token: %w", op, ErrNotFound)
	}
	want := hashSecret(secret)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Host{}, fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	var stored []byte
	t, err := scanBootstrapToken(tx.QueryRowContext(ctx,
		"SELECT "+bootstrapColumns+", hash FROM bootstrap_tokens WHERE hash = ?", want), &stored)
	if errors.Is(err, sql.ErrNoRows) || err == nil && subtle.ConstantTimeCompare(stored, want) != 1 {
		return Host{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return Host{}, fmt.Errorf("%s: %w", op, err)
	}
	now := s.now()
	switch {
	case !t.Used.IsZero():
		return Host{}, fmt.Errorf("%s: token %s was used at %s: %w", op, t.ID, t.Used.Format(time.RFC3339), ErrTokenUsed)
	case !now.Before(t.Expires):
		return Host{}, fmt.Errorf("%s: token %s expired at %s: %w", op, t.ID, t.Expires.Format(time.RFC3339), ErrTokenExpired)
	case t.Host != "" && t.Host != h.Name:
		return Host{}, fmt.Errorf("%s: token %s is for host %q: %w", op, t.ID, t.Host, ErrTokenHost)
	}
	// The used_ns IS NULL guard makes a second writer that read the token
	// before this one committed spend nothing.
	res, err := tx.ExecContext(ctx, "UPDATE bootstrap_tokens SET used_ns = ?, used_by = ? WHERE id = ? AND used_ns IS NULL",
		toNanos(now), h.Name, t.ID)
	if err != nil {
		return Host{}, fmt.Errorf("%s: spend token %s: %w", op, t.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return Host{}, fmt.Errorf("%s: token %s: %w", op, t.ID, ErrTokenUsed)
	}
	out := Host{Name: h.Name, CertSerial: h.CertSerial, CertFingerprint: h.CertFingerprint, Enrolled: fromNanos(toNanos(now))}
	// A new enrollment starts from nothing: the old certificate is
	// replaced, and the host has realized nothing with the new one yet.
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO hosts (name, cert_serial, cert_fingerprint, enrolled_ns) VALUES (?, ?, ?, ?)
		 ON CONFLICT (name) DO UPDATE SET cert_serial = excluded.cert_serial, cert_fingerprint = excluded.cert_fingerprint,
		   enrolled_ns = excluded.enrolled_ns, last_seen_ns = NULL, revoked_ns = NULL,
		   realized_revision = 0, realized_digest = NULL, last_error = ''`,
		out.Name, out.CertSerial, out.CertFingerprint, toNanos(out.Enrolled)); err != nil {
		return Host{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return Host{}, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}

const hostColumns = "name, cert_serial, cert_fingerprint, enrolled_ns, revoked_ns, last_seen_ns, realized_revision, realized_digest, last_error"

func scanHost(row scanner) (Host, error) {
	var (
		h                 Host
		enrolled          int64
		revoked, lastSeen sql.NullInt64
	)
	if err := row.Scan(&h.Name, &h.CertSerial, &h.CertFingerprint, &enrolled, &revoked, &lastSeen,
		&h.RealizedRevision, &h.RealizedDigest, &h.LastError); err != nil {
		return Host{}, err
	}
	h.Enrolled, h.Revoked, h.LastSeen = fromNanos(enrolled), fromNullNanos(revoked), fromNullNanos(lastSeen)
	return h, nil
}

// Host returns one host by name.
func (s *SQLite) Host(ctx context.Context, name string) (Host, error) {
	h, err := scanHost(s.r.QueryRowContext(ctx, "SELECT "+hostColumns+" FROM hosts WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return Host{}, fmt.Errorf("store: load host %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Host{}, fmt.Errorf("store: load host %q: %w", name, err)
	}
	return h, nil
}

// Hosts lists every host by name.
func (s *SQLite) Hosts(ctx context.Context) ([]Host, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+hostColumns+" FROM hosts ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list hosts: %w", err)
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list hosts: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list hosts: %w", err)
	}
	return out, nil
}

// UpdateHostStatus replaces what the host last reported.
func (s *SQLite) UpdateHostStatus(ctx context.Context, name string, st HostStatus) error {
	digest := st.RealizedDigest
	if len(digest) == 0 {
		digest = nil // stored as NULL, read back as nil
	} else {
		digest = bytes.Clone(digest)
	}
	res, err := s.w.ExecContext(ctx,
		"UPDATE hosts SET last_seen_ns = ?, realized_revision = ?, realized_digest = ?, last_error = ? WHERE name = ?",
		nullTime(st.LastSeen), st.RealizedRevision, digest, st.LastError, name)
	if err != nil {
		return fmt.Errorf("store: update host %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: update host %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("store: update host %q: %w", name, ErrNotFound)
	}
	return nil
}

// RevokeHost marks the host's certificate revoked.
func (s *SQLite) RevokeHost(ctx context.Context, name string) error {
	res, err := s.w.ExecContext(ctx, "UPDATE hosts SET revoked_ns = COALESCE(revoked_ns, ?) WHERE name = ?", toNanos(s.now()), name)
	if err != nil {
		return fmt.Errorf("store: revoke host %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: revoke host %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("store: revoke host %q: %w", name, ErrNotFound)
	}
	return nil
}
