package enforce

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/idsagent"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// idsRunner is the IDS reader that runs while the realized state has IDS
// workloads (internal/idsagent).
type idsRunner struct {
	cfg    idsagent.Config
	on     bool // WithIDS was given
	warned bool
	reader *idsagent.Reader
	stop   func()
}

// WithIDS configures the IDS reader that runs while a state has IDS
// workloads: cfg.Sink receives the alerts (EVE JSON); its queue range,
// NFLOG group and namespace are the table's (nft.Config). Without it, a
// state's IDS part is installed in the kernel but nothing inspects.
func WithIDS(cfg idsagent.Config, log *slog.Logger) Option {
	return func(e *NFT) {
		cfg.Log = log
		e.ids.cfg, e.ids.on = cfg, true
	}
}

// fromTable takes the reader's kernel-facing settings from the table's
// configuration.
func (r *idsRunner) fromTable(cfg nft.Config) {
	r.cfg.NetNS = cfg.NetNS
	r.cfg.Queue = cmp.Or(cfg.IDSQueue, nft.DefaultIDSQueue)
	r.cfg.Queues = int(max(cfg.IDSQueues, 1))
	r.cfg.LogGroup = cmp.Or(cfg.IDSLogGroup, nft.DefaultIDSLogGroup)
	r.cfg.QueueFailClosed = cfg.IDSFailClosed
}

// syncIDS runs the IDS reader with st's IDS part when it has workloads and
// stops it otherwise (st nil: stop). Called with mu held.
func (e *NFT) syncIDS(st *nft.HostState) {
	r := &e.ids
	if st == nil || !st.HasIDS() {
		if r.stop != nil {
			r.stop()
			e.log.Info("IDS reader stopped", "stats", fmt.Sprintf("%+v", r.reader.Stats()))
			r.reader, r.stop = nil, nil
		}
		return
	}
	if !r.on {
		if !r.warned {
			e.log.Warn("the state asks for IDS but this enforcer has no IDS reader: nothing is inspected")
			r.warned = true
		}
		return
	}
	if r.reader == nil {
		rd, err := idsagent.New(r.cfg)
		if err != nil {
			e.log.Error("IDS reader", "err", err)
			return
		}
		r.reader = rd
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { e.runIDS(ctx, rd) })
		r.stop = func() { cancel(); wg.Wait() }
		e.log.Info("IDS reader started", "queue", r.cfg.Queue, "queues", r.cfg.Queues, "nflog_group", r.cfg.LogGroup)
	}
	r.reader.SetState(st.IDS)
}

// runIDS runs the reader until ctx is done, restarting it after a failure
// (meanwhile the table's bypass flag decides for queued packets).
func (e *NFT) runIDS(ctx context.Context, r *idsagent.Reader) {
	wait := time.Second
	for ctx.Err() == nil {
		err := r.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		e.log.Error("IDS reader failed; restarting", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// IDSStats returns the IDS reader's counters; ok is false when none runs.
func (e *NFT) IDSStats() (idsagent.Stats, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ids.reader == nil {
		return idsagent.Stats{}, false
	}
	return e.ids.reader.Stats(), true
}
