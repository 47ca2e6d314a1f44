package agent

import (
	"context"
	"log/slog"
	"sync"
)

// DryRun is an Enforcer that enforces nothing: it logs each desired state
// and reports it as realized. It lets an agent follow a manager on a host
// where it must not, or cannot, touch the kernel.
type DryRun struct {
	log *slog.Logger

	mu       sync.Mutex
	revision int64
}

var _ Enforcer = (*DryRun)(nil)

// NewDryRun returns a DryRun enforcer logging to log.
func NewDryRun(log *slog.Logger) *DryRun {
	if log == nil {
		log = slog.Default()
	}
	return &DryRun{log: log.With("component", "dry-run")}
}

// Apply logs the desired state.
func (d *DryRun) Apply(ctx context.Context, revision int64, format string, payload []byte) error {
	d.mu.Lock()
	d.revision = revision
	d.mu.Unlock()
	d.log.Info("dry run: desired state not enforced", "revision", revision, "format", format, "bytes", len(payload))
	return nil
}

// Verify reports the last revision applied.
func (d *DryRun) Verify(ctx context.Context) (int64, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.revision, true, nil
}

// Remove forgets the last revision.
func (d *DryRun) Remove(ctx context.Context) error {
	d.mu.Lock()
	d.revision = 0
	d.mu.Unlock()
	return nil
}
