package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

// statusBox holds what the agent tells the manager it realized.
type statusBox struct {
	mu sync.Mutex
	st *agentapi.AckRequest
}

func (b *statusBox) set(st *agentapi.AckRequest) {
	b.mu.Lock()
	b.st = st
	b.mu.Unlock()
}

// get returns a copy, safe to send while the enforcer moves on.
func (b *statusBox) get() *agentapi.AckRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.st == nil {
		return &agentapi.AckRequest{}
	}
	return proto.Clone(b.st).(*agentapi.AckRequest)
}

// offer queues a desired state for the enforcer, replacing one that waits.
// Only the Watch receiver calls it, so the send after the drain cannot block.
func (a *Agent) offer(ds *agentapi.DesiredState) {
	select {
	case <-a.desired:
	default:
	}
	a.desired <- ds
}

func (a *Agent) wakeAck() {
	select {
	case a.ackWake <- struct{}{}:
	default:
	}
}

// enforce owns the Enforcer: it applies the saved state at once, then each
// desired state received, and re-applies the realized state when Verify
// finds drift.
// restored is closed once the saved state was applied (or failed to be).
func (a *Agent) enforce(ctx context.Context, saved *agentapi.DesiredState, restored chan<- struct{}) {
	// failed is a desired state whose apply failed; it is retried at each
	// drift check until it succeeds or a newer one arrives.
	var realized, failed *agentapi.DesiredState
	if saved != nil {
		// Before anything else, and without the manager: the kernel may
		// have lost the table (reboot), or hold it still (agent restart),
		// in which case the apply changes nothing and keeps connections.
		realized, failed = a.apply(ctx, nil, saved)
		if failed == nil {
			a.log.Info("re-applied the saved desired state", "revision", saved.Revision, "format", saved.Format)
		}
		a.wakeAck()
	}
	close(restored)
	drift := time.NewTicker(a.cfg.DriftInterval)
	defer drift.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ds := <-a.desired:
			realized, failed = a.apply(ctx, realized, ds)
			a.wakeAck()
		case <-drift.C:
			if failed != nil {
				realized, failed = a.apply(ctx, realized, failed)
				a.wakeAck()
				continue
			}
			if realized != nil && a.repair(ctx, realized) {
				a.wakeAck()
			}
		}
	}
}

// apply installs ds and returns the state now realized, and ds again if it
// failed.
func (a *Agent) apply(ctx context.Context, realized, ds *agentapi.DesiredState) (now, failed *agentapi.DesiredState) {
	prev := &agentapi.AckRequest{}
	if realized != nil {
		prev = &agentapi.AckRequest{RealizedRevision: realized.Revision, RealizedDigest: realized.Digest}
	}
	if got := agentapi.Digest(ds.Format, ds.DesiredState); !bytes.Equal(got, ds.Digest) {
		err := fmt.Errorf("digest %x does not match the payload's %x", ds.Digest, got)
		a.log.Error("refusing a damaged desired state", "revision", ds.Revision, "err", err)
		prev.Error, prev.FailedRevision = err.Error(), ds.Revision
		a.status.set(prev)
		return realized, nil // retrying cannot mend it
	}
	if realized != nil && bytes.Equal(realized.Digest, ds.Digest) && realized.Revision == ds.Revision {
		a.status.set(prev)
		return realized, nil
	}
	if err := a.enf.Apply(ctx, ds.Revision, ds.Format, ds.DesiredState); err != nil {
		a.log.Error("cannot apply desired state; the previous one stays in force", "revision", ds.Revision, "format", ds.Format, "err", err)
		prev.Error, prev.FailedRevision = err.Error(), ds.Revision
		a.status.set(prev)
		return realized, ds
	}
	if err := saveDesired(a.cfg.StateDir, ds); err != nil {
		// The kernel holds ds; only a restart without the manager would
		// fall back to the older saved state.
		a.log.Error("cannot save the desired state", "revision", ds.Revision, "err", err)
	}
	a.log.Info("desired state applied", "revision", ds.Revision, "format", ds.Format, "bytes", len(ds.DesiredState))
	a.status.set(&agentapi.AckRequest{RealizedRevision: ds.Revision, RealizedDigest: ds.Digest})
	return ds, nil
}

const driftErrPrefix = "drift repair: "

// repair verifies the kernel and re-applies realized when it drifted; it
// reports whether the status changed.
func (a *Agent) repair(ctx context.Context, realized *agentapi.DesiredState) bool {
	rev, ok, err := a.enf.Verify(ctx)
	if err == nil && ok && rev == realized.Revision {
		return false
	}
	a.log.Warn("drift: the kernel no longer holds the realized state; re-applying", "revision", realized.Revision, "kernel_revision", rev, "verified", ok, "err", err)
	if err := a.enf.Apply(ctx, realized.Revision, realized.Format, realized.DesiredState); err != nil {
		a.log.Error("drift repair failed", "revision", realized.Revision, "err", err)
		a.status.set(&agentapi.AckRequest{RealizedRevision: realized.Revision, RealizedDigest: realized.Digest,
			Error: driftErrPrefix + err.Error(), FailedRevision: realized.Revision})
		return true
	}
	a.log.Info("drift repaired", "revision", realized.Revision)
	if !strings.HasPrefix(a.status.get().Error, driftErrPrefix) {
		return false
	}
	a.status.set(&agentapi.AckRequest{RealizedRevision: realized.Revision, RealizedDigest: realized.Digest})
	return true
}

// saveDesired writes the realized desired state to the state dir.
func saveDesired(dir string, ds *agentapi.DesiredState) error {
	b, err := proto.Marshal(ds)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, DesiredFile), b, 0o600)
}

// loadDesired reads the saved desired state; nil when there is none.
func loadDesired(dir string) (*agentapi.DesiredState, error) {
	b, err := os.ReadFile(filepath.Join(dir, DesiredFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ds := new(agentapi.DesiredState)
	if err := proto.Unmarshal(b, ds); err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, DesiredFile, err)
	}
	if !bytes.Equal(agentapi.Digest(ds.Format, ds.DesiredState), ds.Digest) {
		return nil, fmt.Errorf("%s/%s: digest does not match the content", dir, DesiredFile)
	}
	return ds, nil
}
