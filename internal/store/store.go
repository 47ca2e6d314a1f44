// Package store is the manager's persistence: policy revisions, workload
// inventory, rule id reservation, the audit log and API tokens, behind one
// small interface so that an embedded SQLite file and a shared PostgreSQL can
// serve the same manager.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"
)

var (
	// ErrNotFound is returned for a revision, workload, token or meta key
	// that does not exist (and for an expired token).
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned by Commit when the latest revision is no
	// longer the commit's Base: someone else published in between.
	ErrConflict = errors.New("conflict: latest revision changed")
	// ErrInvalid is returned for arguments the store refuses, such as an
	// unknown token role or a workload without a name.
	ErrInvalid = errors.New("invalid argument")
	// ErrExhausted is returned when no more rule ids can be reserved.
	ErrExhausted = errors.New("rule ids exhausted")
)

// FirstRuleID is the lowest id NextRuleIDs hands out; ids below it are kept
// for built-in rules (policy.DefaultRuleID is 1).
const FirstRuleID uint32 = 100

// Token roles, from most to least powerful.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleAuditor  = "auditor"
)

// Roles lists the token roles the store accepts.
var Roles = []string{RoleAdmin, RoleOperator, RoleAuditor}

// ValidRole reports whether role is one of Roles.
func ValidRole(role string) bool {
	for _, r := range Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Revision is one published policy state. Set holds the policy kinds and
// RuleIDs; its Workloads map is empty (inventory is not revisioned).
type Revision struct {
	Number  int64
	Author  string
	Time    time.Time
	Summary string
	// Rollback is 0, or the revision this one restored.
	Rollback int64
	Set      *policy.Set
}

// RevisionInfo describes a revision without loading its set.
type RevisionInfo struct {
	Number   int64
	Author   string
	Time     time.Time
	Summary  string
	Rollback int64 // 0 or the revision it restored
}

// AuditEntry is one line of the audit log: who did what to which object, and
// the diff it made.
type AuditEntry struct {
	ID       int64
	Time     time.Time
	Actor    string
	Action   string // apply, delete, rollback, token.create, ...
	Object   string // "Policy/shop", or "" when the action has no single object
	Revision int64  // the revision the action produced or concerned, or 0
	Diff     string
}

// AuditFilter selects audit entries. Zero fields do not filter.
type AuditFilter struct {
	Since  time.Time // inclusive
	Until  time.Time // exclusive
	Actor  string
	Action string
	Object string
	// Limit caps the number of entries returned; 0 means no limit.
	Limit int
}

// Commit is one atomic change: an optional new revision, workload changes and
// the audit entries that describe them.
type Commit struct {
	// Base is the revision the change was computed on. When Set is non-nil,
	// Commit fails with ErrConflict unless the latest revision is still Base.
	// Inventory-only commits (Set nil) do not conflict with anything.
	Base    int64
	Author  string
	Summary string
	// Set is the new policy state, or nil when only inventory or the audit
	// log changes. Its Workloads are not stored.
	Set *policy.Set
	// Rollback is the revision Set restores, or 0. Only with a Set.
	Rollback        int64
	UpsertWorkloads []*policy.Workload
	// DeleteWorkloads are workload names; an unknown name fails the commit
	// with ErrNotFound.
	DeleteWorkloads []string
	// Audit entries are written with the store's time and a fresh ID. An
	// entry whose Revision is 0 gets the new revision's number when Set is
	// non-nil.
	Audit []AuditEntry
}

// Token is an API token as stored: everything but the secret, of which only
// a SHA-256 hash is kept.
type Token struct {
	ID      string
	Name    string
	Role    string
	Created time.Time
	// Expires is zero for a token that never expires.
	Expires time.Time
}

// Expired reports whether the token is no longer valid at now.
func (t Token) Expired(now time.Time) bool {
	return !t.Expires.IsZero() && !now.Before(t.Expires)
}

// Store is the manager's persistence. Implementations are safe for
// concurrent use.
type Store interface {
	// Latest returns the newest revision, or revision 0 holding
	// policy.NewSet() when nothing was published yet.
	Latest(ctx context.Context) (*Revision, error)
	// Revision returns revision n (0 is the empty set); ErrNotFound if it
	// does not exist.
	Revision(ctx context.Context, n int64) (*Revision, error)
	// Revisions lists revisions newest first; limit <= 0 lists all.
	Revisions(ctx context.Context, limit int) ([]RevisionInfo, error)
	// Commit applies c in one transaction and returns the latest revision
	// number after it.
	Commit(ctx context.Context, c Commit) (int64, error)
	// NextRuleIDs reserves n consecutive rule ids and returns the first.
	// Ids are never handed out twice, and the first is >= FirstRuleID.
	NextRuleIDs(ctx context.Context, n int) (first uint32, err error)

	// Workloads lists the inventory, ordered by name.
	Workloads(ctx context.Context) ([]*policy.Workload, error)
	// InventoryVersion changes with every commit that upserts or deletes
	// workloads: a cache of anything derived from the inventory keys on it.
	InventoryVersion(ctx context.Context) (int64, error)
	// Workload returns one workload; ErrNotFound if unknown.
	Workload(ctx context.Context, name string) (*policy.Workload, error)

	// AuditLog returns the entries f selects, newest first.
	AuditLog(ctx context.Context, f AuditFilter) ([]AuditEntry, error)

	// CreateToken makes a token with one of Roles; ttl 0 means it never
	// expires. The secret is returned once and never stored.
	CreateToken(ctx context.Context, name, role string, ttl time.Duration) (secret string, t Token, err error)
	// LookupToken returns the token whose secret this is; ErrNotFound when
	// unknown or expired.
	LookupToken(ctx context.Context, secret string) (Token, error)
	// Tokens lists every token, expired ones included, oldest first.
	Tokens(ctx context.Context) ([]Token, error)
	// DeleteToken removes a token by ID; ErrNotFound if unknown.
	DeleteToken(ctx context.Context, id string) error

	// Meta returns a small value stored under key (e.g. the CA
	// fingerprint); ErrNotFound if unset.
	Meta(ctx context.Context, key string) (string, error)
	// SetMeta stores value under key, replacing any previous value.
	SetMeta(ctx context.Context, key, value string) error

	HostStore

	Close() error
}

// Option configures a store implementation.
type Option func(*options)

type options struct {
	now func() time.Time
}

func defaultOptions() options {
	return options{now: time.Now}
}

// WithClock makes the store read the time from now, for revision and audit
// times and token expiry.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}
