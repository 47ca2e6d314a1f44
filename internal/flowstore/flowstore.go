// Package flowstore keeps the flow records agents send to the manager, behind
// a small interface: an embedded SQLite file of its own (flows.db, apart from
// the policy store so that flow volume never delays a policy write), and
// later ClickHouse for fleets that outgrow it.
package flowstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// Store keeps flow records.
type Store interface {
	// Ingest stores a batch atomically. Records of one flow (same ID and
	// Start, as the agent sends them) are merged:
	// counters and times keep their largest values, so updates then an
	// end leave the end's totals, and a batch ingested twice (an agent
	// resending after a lost answer) changes nothing. Malformed records
	// are skipped and counted, never failing the batch: a batch that can
	// never be stored would block its agent forever.
	Ingest(ctx context.Context, recs []flow.Record) error
	// Query returns the records that pass f, the most recently seen first.
	Query(ctx context.Context, f Filter) ([]flow.Record, error)
	// Scan calls fn for every record f selects, without a limit, in no
	// particular order: the analyses (map, recommendation, compliance) read
	// a whole window through it. The record passed to fn is reused.
	Scan(ctx context.Context, f Filter, fn func(*flow.Record) error) error
	// Prune deletes what the retention no longer keeps and returns how
	// many records it deleted.
	Prune(ctx context.Context, r Retention) (int64, error)
	Close() error
}

// Filter selects flow records. Zero fields match everything.
type Filter struct {
	From, To Endpoint
	Host     string
	Kind     flow.Kind
	Verdict  flow.Verdict
	RuleID   uint32
	// StagedRuleID selects flows a staged rule would have decided.
	StagedRuleID uint32
	// User selects flows of one directory user (flow.Record.User).
	User string
	// App selects flows the agent's L7 reader classified as this AppID
	// (flow.Record.App).
	App string
	// NoMirrors leaves out mirror records (a second host's view of a
	// connection), so that each connection is read once.
	NoMirrors bool
	// Since and Until select flows active at some time between them:
	// last seen at or after Since, started before Until.
	Since, Until time.Time
	Proto        uint8
	// Port is the destination port.
	Port uint16
	// Limit caps the answer; 0 means DefaultLimit, and it is never more
	// than MaxLimit.
	Limit int
}

// Limits of a query's answer.
const (
	DefaultLimit = 100
	MaxLimit     = 100000
)

// Endpoint is one end of a flow in a filter: a workload name, or an
// address prefix (a single address is a /32 or /128).
type Endpoint struct {
	Workload string
	Prefix   netip.Prefix
}

// IsZero reports whether the endpoint matches anything.
func (e Endpoint) IsZero() bool { return e.Workload == "" && !e.Prefix.IsValid() }

func (e Endpoint) String() string {
	if e.Workload != "" {
		return e.Workload
	}
	if e.Prefix.IsValid() && e.Prefix.IsSingleIP() {
		return e.Prefix.Addr().String()
	}
	return e.Prefix.String()
}

// ParseEndpoint reads an IP address, a CIDR prefix or else a workload name.
func ParseEndpoint(s string) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return Endpoint{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return Endpoint{Prefix: p.Masked()}, nil
	}
	for _, c := range s {
		if c == '/' || c == ' ' {
			return Endpoint{}, fmt.Errorf("endpoint %q: not an IP address, a CIDR prefix or a workload name", s)
		}
	}
	return Endpoint{Workload: s}, nil
}

// Retention says what Prune keeps. Zero fields keep everything.
type Retention struct {
	// MaxAge drops records last seen longer ago than this.
	MaxAge time.Duration
	// MaxRows keeps only the most recently seen records.
	MaxRows int64
}

// ErrInvalid is returned for a filter the store refuses.
var ErrInvalid = errors.New("invalid flow filter")
