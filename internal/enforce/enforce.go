// Package enforce is the agent's data plane: it takes the desired states the
// manager streams (span's host-state encoding) and makes the nftables table
// of one network namespace hold exactly that, reporting drift; while a state
// has L7 rules it also runs the namespace's queue reader (internal/l7), and
// while it has FQDN rules the DNS snooper that fills their sets
// (internal/dnssnoop), and while it has IDS workloads the IDS reader
// (internal/idsagent).
package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/agent"
	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/dnssnoop"
	"github.com/bulkhead/bulkhead/internal/l7"
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

	l7cfg  l7.Config
	log    *slog.Logger
	reader *l7.Reader // running while the realized state has L7 entries
	stopL7 func()

	netns     int
	tableName string
	fqdn      *fqdnRunner // running while the realized state has FQDN entries
	dnsCache  dnssnoop.CacheConfig
	ids       idsRunner // running while the realized state has IDS workloads
}

// Option changes how an NFT enforces.
type Option func(*NFT)

// WithL7 configures the queue reader that runs while a state has L7
// entries (its queue number is the table's, nft.Config.L7Queue) and where
// it logs its counters.
func WithL7(cfg l7.Config, log *slog.Logger) Option {
	return func(e *NFT) { e.l7cfg, e.log = cfg, log }
}

var _ agent.Enforcer = (*NFT)(nil)

// New opens the namespace at netnsPath ("" for the caller's), checks that
// the kernel has what the table needs, and returns an enforcer for it.
func New(netnsPath string, cfg nft.Config, opts ...Option) (*NFT, error) {
	e := &NFT{log: slog.Default()}
	for _, o := range opts {
		o(e)
	}
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
	e.netns, e.tableName = cfg.NetNS, cfg.Table
	if e.tableName == "" {
		e.tableName = nft.DefaultTable
	}
	e.l7cfg.NetNS = cfg.NetNS
	e.l7cfg.Queue = cfg.L7Queue
	e.l7cfg.Queues = int(max(cfg.L7Queues, 1))
	e.ids.fromTable(cfg)
	return e, nil
}

// Close stops the queue reader and releases the namespace descriptor; the
// table stays in force (with its fail-open or fail-closed bypass).
func (e *NFT) Close() error {
	e.mu.Lock()
	e.syncL7(nil)
	e.syncFQDN(nil, false, false)
	e.syncIDS(nil)
	e.mu.Unlock()
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
		e.syncL7(nil)
		e.syncFQDN(nil, false, true)
		e.syncIDS(nil)
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
	stats, err := e.table.Apply(st)
	if err != nil {
		return fmt.Errorf("enforce: revision %d: %w", revision, err)
	}
	e.syncL7(st)
	e.syncFQDN(st, stats.Mode == nft.ModeFull, true)
	e.syncIDS(st)
	e.empty, e.revision = false, revision
	return nil
}

// syncL7 runs the queue reader with st when st has L7 entries and stops it
// otherwise (st nil: stop). Called with mu held.
func (e *NFT) syncL7(st *nft.HostState) {
	if st == nil || !st.HasL7() {
		if e.stopL7 != nil {
			e.stopL7()
			e.log.Info("L7 queue reader stopped", "stats", fmt.Sprintf("%+v", e.reader.Stats()))
			e.reader, e.stopL7 = nil, nil
		}
		return
	}
	if e.reader == nil {
		cfg := e.l7cfg
		cfg.Log = e.log
		r, err := l7.New(cfg)
		if err != nil {
			e.log.Error("L7 queue reader", "err", err)
			return
		}
		e.reader = r
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { e.runL7(ctx, r) })
		e.stopL7 = func() { cancel(); wg.Wait() }
		e.log.Info("L7 queue reader started", "queue", cfg.Queue, "failOpen", st.L7FailOpen)
	}
	if err := e.reader.SetState(st); err != nil {
		e.log.Error("L7 queue reader: state", "err", err)
	}
}

// runL7 runs the reader until ctx is done, restarting it after a failure
// (meanwhile the table's bypass flag decides), and logs its counters every
// minute when they moved.
func (e *NFT) runL7(ctx context.Context, r *l7.Reader) {
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		var last l7.Stats
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if s := r.Stats(); s != last {
					e.log.Info("L7 queue reader", "stats", fmt.Sprintf("%+v", s))
					last = s
				}
			}
		}
	})
	defer wg.Wait()
	wait := time.Second
	for ctx.Err() == nil {
		err := r.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		e.log.Error("L7 queue reader failed; restarting", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// syncFQDN runs the DNS snooper for st when st has FQDN entries and stops
// it otherwise (st nil: stop; uninstall also removes its capture table).
// full says the table was just recreated, emptying the FQDN sets. Called
// with mu held.
func (e *NFT) syncFQDN(st *nft.HostState, full, uninstall bool) {
	if st == nil || !st.HasFQDN() {
		var err error
		switch {
		case e.fqdn != nil:
			err = e.fqdn.close(uninstall)
			e.fqdn = nil
		case uninstall:
			// An uninstalling agent never ran one: a capture table left
			// by an earlier process goes all the same.
			err = dnssnoop.RemoveCapture(dnssnoop.CaptureConfig{NetNS: e.netns})
		}
		if err != nil {
			e.log.Error("DNS snooper: remove capture table", "err", err)
		}
		return
	}
	if e.fqdn == nil {
		f, err := startFQDN(e.netns, e.tableName, e.dnsCache, e.log)
		if err != nil {
			e.log.Error("DNS snooper", "err", err)
			return
		}
		e.fqdn = f
		e.log.Info("DNS snooper started", "sets", len(st.FQDNSets))
	}
	if err := e.fqdn.setState(st, full); err != nil {
		e.log.Error("DNS snooper: FQDN sets", "err", err)
	}
}

// FQDNStats returns the DNS snooper's counters; ok is false when none
// runs.
func (e *NFT) FQDNStats() (FQDNStats, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fqdn == nil {
		return FQDNStats{}, false
	}
	return e.fqdn.stats(), true
}

// L7Stats returns the queue reader's counters; ok is false when none runs.
func (e *NFT) L7Stats() (l7.Stats, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reader == nil {
		return l7.Stats{}, false
	}
	return e.reader.Stats(), true
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
	e.syncL7(nil)
	e.syncFQDN(nil, false, true)
	e.syncIDS(nil)
	if err := e.table.Remove(); err != nil {
		return fmt.Errorf("enforce: remove: %w", err)
	}
	return nil
}
