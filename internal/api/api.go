// Package api holds the wire types of the manager's REST API (/api/v1), shared
// by the manager and its client so both sides agree on one definition.
package api

import (
	"encoding/json"
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// Prefix is the path prefix of every versioned API route.
const Prefix = "/api/v1"

// Roles, from most to least powerful.
const (
	RoleAdmin    = "admin"    // everything, including user and token management
	RoleOperator = "operator" // edit policy and inventory
	RoleAuditor  = "auditor"  // read only
)

// RoleRank orders roles so that a route can require a minimum; unknown roles
// rank below every known one.
func RoleRank(role string) int {
	switch role {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleAuditor:
		return 1
	}
	return 0
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	// Details lists validation errors, one per bad field, when the request
	// carried documents.
	Details []FieldError `json:"details,omitempty"`
}

// FieldError is policy.FieldError on the wire.
type FieldError struct {
	File    string `json:"file,omitempty"`
	Index   int    `json:"index,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
	Field   string `json:"field,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Document is one resource as sent by `bulkhead apply`, with where it came
// from so that the manager's errors can name the file and line.
type Document struct {
	Source policy.Source   `json:"source"`
	Object json.RawMessage `json:"object"`
}

// ApplyRequest creates or updates the given resources as one revision.
type ApplyRequest struct {
	Documents []Document `json:"documents"`
	// DryRun validates and reports the changes without writing anything.
	DryRun  bool   `json:"dryRun,omitempty"`
	Summary string `json:"summary,omitempty"`
}

// ApplyResponse says what changed and which revision holds it.
type ApplyResponse struct {
	Revision int64           `json:"revision"`
	Changes  []policy.Change `json:"changes"`
	DryRun   bool            `json:"dryRun,omitempty"`
}

// DeleteResponse answers a resource deletion.
type DeleteResponse struct {
	Revision int64           `json:"revision"`
	Changes  []policy.Change `json:"changes"`
}

// Revision describes one published revision.
type Revision struct {
	Number   int64     `json:"number"`
	Author   string    `json:"author"`
	Time     time.Time `json:"time"`
	Summary  string    `json:"summary"`
	Rollback int64     `json:"rollback,omitempty"`
}

// RevisionDetail is a revision with its whole policy.
type RevisionDetail struct {
	Revision
	Set *policy.Set `json:"set"`
}

// DiffResponse lists the changes from one revision to another.
type DiffResponse struct {
	From    int64           `json:"from"`
	To      int64           `json:"to"`
	Changes []policy.Change `json:"changes"`
}

// RollbackRequest publishes the policy of an earlier revision as a new one.
type RollbackRequest struct {
	Revision int64 `json:"revision"`
}

// EvalRequest is a flow to decide. Empty optional fields mean unknown.
type EvalRequest struct {
	From       string `json:"from"`
	To         string `json:"to"`
	Proto      string `json:"proto"`
	Port       int    `json:"port,omitempty"`
	ICMPType   *int   `json:"icmpType,omitempty"`
	ICMPCode   *int   `json:"icmpCode,omitempty"`
	App        string `json:"app,omitempty"`
	TLSVersion string `json:"tlsVersion,omitempty"`
	User       string `json:"user,omitempty"`
	FQDN       string `json:"fqdn,omitempty"`
	// Revision to evaluate against; 0 means the latest.
	Revision int64 `json:"revision,omitempty"`
}

// EvalPoint is the decision at one enforcement point.
type EvalPoint struct {
	Workload     string `json:"workload"`
	Direction    string `json:"direction"`
	Action       string `json:"action"`
	RuleID       uint32 `json:"ruleId"`
	Rule         string `json:"rule"`
	StagedAction string `json:"stagedAction,omitempty"`
	StagedRuleID uint32 `json:"stagedRuleId,omitempty"`
	StagedRule   string `json:"stagedRule,omitempty"`
}

// EvalResponse is the verdict and the rule that decided it.
type EvalResponse struct {
	Revision      int64       `json:"revision"`
	Verdict       string      `json:"verdict"`
	RuleID        uint32      `json:"ruleId"`
	Rule          string      `json:"rule"`
	Enforced      bool        `json:"enforced"`
	Points        []EvalPoint `json:"points"`
	StagedVerdict string      `json:"stagedVerdict,omitempty"`
	StagedRuleID  uint32      `json:"stagedRuleId,omitempty"`
	StagedRule    string      `json:"stagedRule,omitempty"`
}

// AuditEntry is one change in the audit log.
type AuditEntry struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Object   string    `json:"object,omitempty"`
	Revision int64     `json:"revision,omitempty"`
	Diff     string    `json:"diff,omitempty"`
}

// Token describes an API token; the secret is only in TokenCreated.
type Token struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Role    string     `json:"role"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
}

// TokenRequest asks for a new API token.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// TTL as a Go duration ("24h"); empty means no expiry.
	TTL string `json:"ttl,omitempty"`
}

// TokenCreated carries the new token's secret, shown once.
type TokenCreated struct {
	Token
	Secret string `json:"secret"`
}

// WhoAmI says who the caller is.
type WhoAmI struct {
	Name string `json:"name"`
	Role string `json:"role"`
}
