// Package enforce is the agent's data plane: it takes the desired states the
// manager streams (span's host-state encoding) and makes the nftables table
// of one network namespace hold exactly that, reporting drift.
package enforce

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/span"
)

// NFT enforces desired states with an nft.Table.
type NFT struct {
	mu    sync.Mutex
	ns    *os.File // keeps the namespace descriptor alive; nil for our own
	table *nft.Table
	// empty is set when the last desired state was "enforce nothing": the
	// table is then absent on purpose.
	empty    bool
	revision int64
}

var _ agent.Enforcer = (*NFT)(nil)

// New opens the namespace at netnsPath ("" for the caller's), checks that
// the kernel has what the table needs, and returns an enforcer for it.
func New(netnsPath string, cfg nft.Config) (*NFT, error) {
	e := &NFT{}
	if netnsPath != "" {
		f, err := os.Open(netnsPath)
		if err != nil {
			return nil, fmt.Errorf("enforce: open netns: %w", err)
		}
		e.ns = f
		cfg.NetNS = int(f.Fd())
	}
	if err := nft.CheckKernel(cfg); err != nil {
		e.Close()
		return nil, fmt.Errorf("enforce: kernel check: %w", err)
	}
	t, err := nft.New(cfg)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("enforce: %w", err)
	}
	e.table = t
	return e, nil
}

// Close releases the namespace descriptor; the table stays in force.
func (e *NFT) Close() error {
	if e.ns != nil {
		return e.ns.Close()
	}
	return nil
}

// Apply makes the kernel enforce payload as revision in one batch; on
// error the previous table stays.
func (e *NFT) Apply(ctx context.Context, revision int64, format string, payload []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch format {
	case agentapi.FormatEmpty:
		// No policy concerns this host: nothing of ours may filter.
		if err := e.table.Remove(); err != nil {
			return fmt.Errorf("enforce: revision %d: remove table: %w", revision, err)
		}
		e.empty, e.revision = true, revision
		return nil
	case span.Format:
	default:
		return fmt.Errorf("enforce: revision %d: unknown desired-state format %q", revision, format)
	}
	st, err := span.Decode(payload)
	if err != nil {
		return fmt.Errorf("enforce: revision %d: %w", revision, err)
	}
	// The manager leaves the revision out of the payload (so unchanged
	// spans are not resent); the kernel table records the one we realize.
	st.Revision = uint64(revision)
	if _, err := e.table.Apply(st); err != nil {
		return fmt.Errorf("enforce: revision %d: %w", revision, err)
	}
	e.empty, e.revision = false, revision
	return nil
}

// Verify reads the table back: ok is false when someone changed or removed
// it since the last Apply.
func (e *NFT) Verify(ctx context.Context) (int64, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, err := e.table.Verify(false)
	if err != nil {
		return 0, false, fmt.Errorf("enforce: verify: %w", err)
	}
	if e.empty {
		return e.revision, !st.Present, nil
	}
	return int64(st.Revision), st.Present && len(st.Drift) == 0, nil
}

// Remove deletes the table.
func (e *NFT) Remove(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.table.Remove(); err != nil {
		return fmt.Errorf("enforce: remove: %w", err)
	}
	return nil
}
