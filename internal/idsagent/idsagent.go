// Package idsagent is the agent's intrusion detection and prevention
// runner: it reads the packets the inspection table (internal/nft,
// ids_chain.go) hands to userspace — copies from NFLOG for workloads in
// detect mode, the packets themselves from NFQUEUE for workloads in
// prevent mode — inspects each with the signature engine (internal/ids)
// compiled for the workload it belongs to, answers queued packets (a block
// verdict makes the kernel reset and block the flow), and turns alerts
// into EVE JSON records for a sink.
package idsagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	nflog "github.com/florianl/go-nflog/v2"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/ids"
	"github.com/bulkhead/bulkhead/internal/nfq"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// Config configures a Reader. Zero values mean the defaults.
type Config struct {
	// NetNS is a descriptor of the namespace whose NFLOG group and queues
	// are read; 0 the caller's.
	NetNS int
	// Host names this host in every alert's "bulkhead" object.
	Host string
	// Queue and Queues are the inspection table's queue range
	// (nft.Config.IDSQueue, IDSQueues): one reader goroutine, with its own
	// flow table, per queue. Defaults nft.DefaultIDSQueue and 1.
	Queue  uint16
	Queues int
	// LogGroup is the NFLOG group of detect-mode copies
	// (nft.Config.IDSLogGroup). Default nft.DefaultIDSLogGroup.
	LogGroup uint16
	// QueueFailClosed drops packets the kernel cannot queue because the
	// queue is full; by default they pass uninspected (fail-open), as
	// they do while no reader is bound (nft.Config.IDSFailClosed).
	QueueFailClosed bool
	// Sink receives every alert as one EVE JSON record (no newline). It
	// is called from the reader goroutines and must not block for long.
	Sink func(eve []byte)
	// EVELog, if set, is a file every alert is appended to as well, one
	// EVE record per line (like Suricata's eve.json).
	EVELog string
	// Inspector holds the flow table limits of each reader goroutine;
	// OnAlert and Interface are the Reader's.
	Inspector ids.InspectorConfig
	// IfName resolves an interface index of the namespace to its name;
	// default netlink in NetNS.
	IfName func(index uint32) (string, error)
	// StatsInterval is how often Run logs the counters when they moved.
	// Default one minute.
	StatsInterval time.Duration
	Log           *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Queue == 0 {
		c.Queue = nft.DefaultIDSQueue
	}
	if c.Queues <= 0 {
		c.Queues = 1
	}
	if c.LogGroup == 0 {
		c.LogGroup = nft.DefaultIDSLogGroup
	}
	if c.IfName == nil {
		c.IfName = nfq.IfName(c.NetNS)
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	return c
}

// Stats are the reader's counters since it was made.
type Stats struct {
	Packets  uint64 // packets inspected (copies and queued)
	Bytes    uint64 // their IP lengths
	Copies   uint64 // of them, NFLOG copies (detect)
	Queued   uint64 // of them, queued packets (prevent)
	Alerts   uint64 // alerts sent to the sink
	Blocks   uint64 // block verdicts given (drop/reject rules, blocked flows)
	NoEngine uint64 // packets of no inspected workload, or before the first engine
	Swaps    uint64 // engine sets put in service
	// Problems counts the state's rules the last build could not use.
	Problems  uint64
	Overruns  uint64 // NFLOG copies lost because the reader was slow
	Errors    uint64 // failed verdicts, receives, sink encodings
	Rules     int    // signatures of the engine set in service (all engines)
	Engines   int    // distinct engines in service
	Workloads int    // inspected interfaces in service
}

// Reader runs the IDS of one namespace. Its state (SetState) may change
// while it runs; inspection goes on with the previous engines until the
// new ones are compiled.
type Reader struct {
	cfg Config
	log *slog.Logger

	set     atomic.Pointer[engineSet]
	builder builder

	ifMu    sync.RWMutex
	ifNames map[uint32]string

	eveMu sync.Mutex
	eve   *os.File

	packets, bytes, copies, queued, alerts, blocks, noEngine atomic.Uint64
	swaps, problems, overruns, errs                          atomic.Uint64
}

// New returns a Reader; it touches nothing in the kernel until Run.
func New(cfg Config) (*Reader, error) {
	cfg = cfg.withDefaults()
	if int(cfg.Queue)+cfg.Queues-1 > 65535 {
		return nil, fmt.Errorf("idsagent: queues %d-%d: beyond queue 65535", cfg.Queue, int(cfg.Queue)+cfg.Queues-1)
	}
	if cfg.Sink == nil {
		return nil, errors.New("idsagent: config: a sink for alerts is required")
	}
	r := &Reader{cfg: cfg, log: cfg.Log, ifNames: map[uint32]string{}}
	r.set.Store(&engineSet{})
	r.builder.r = r
	return r, nil
}

// Stats returns the counters.
func (r *Reader) Stats() Stats {
	s := Stats{
		Packets: r.packets.Load(), Bytes: r.bytes.Load(), Copies: r.copies.Load(), Queued: r.queued.Load(),
		Alerts: r.alerts.Load(), Blocks: r.blocks.Load(), NoEngine: r.noEngine.Load(), Swaps: r.swaps.Load(),
		Problems: r.problems.Load(), Overruns: r.overruns.Load(), Errors: r.errs.Load(),
	}
	set := r.set.Load()
	s.Rules, s.Engines, s.Workloads = set.rules, set.engines, len(set.byIface)
	return s
}

// Version is the signature set version of the engines in service.
func (r *Reader) Version() string { return r.set.Load().version }

// Run reads the NFLOG group and the queues until ctx is done, then closes
// them (the kernel's bypass flag then decides for queued packets). It
// returns an error when one of them cannot be bound or fails.
func (r *Reader) Run(ctx context.Context) error {
	if r.cfg.EVELog != "" {
		f, err := os.OpenFile(r.cfg.EVELog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("idsagent: EVE log: %w", err)
		}
		r.eveMu.Lock()
		r.eve = f
		r.eveMu.Unlock()
		defer func() {
			r.eveMu.Lock()
			r.eve = nil
			r.eveMu.Unlock()
			f.Close()
		}()
	}
	flags := uint32(nfq.FlagGSO)
	if !r.cfg.QueueFailClosed {
		flags |= nfq.FlagFailOpen
	}
	qcs := make([]*nfq.Conn, 0, r.cfg.Queues)
	defer func() {
		for _, qc := range qcs {
			qc.Close()
		}
	}()
	for i := range r.cfg.Queues {
		q := r.cfg.Queue + uint16(i)
		qc, err := nfq.Open(q, r.cfg.NetNS, flags)
		if err != nil {
			return fmt.Errorf("idsagent: queue %d: %w", q, err)
		}
		qcs = append(qcs, qc)
	}
	nf, err := flow.OpenNFLog(&nflog.Config{
		NetNS: r.cfg.NetNS, Group: r.cfg.LogGroup, Copymode: nflog.CopyPacket, Bufsize: 0xffff,
		Timeout: 1, // 10 ms: copies reach the engine soon after the packet passed
	}, "idsagent", r.log)
	if err != nil {
		return err
	}
	defer nf.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(qcs)+1)
	var wg sync.WaitGroup
	for i, qc := range qcs {
		wg.Go(func() {
			if errs[i] = r.readQueue(ctx, qc); errs[i] != nil {
				cancel()
			}
		})
	}
	if err := r.readLog(ctx, nf, func(err error) { errs[len(qcs)] = err; cancel() }); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	wg.Go(func() { r.logStats(ctx) })
	wg.Wait()
	return errors.Join(errs...)
}

// readLog registers the NFLOG hook: every copy goes through one worker,
// on go-nflog's receive goroutine (so one flow table sees both directions).
func (r *Reader) readLog(ctx context.Context, nf *nflog.Nflog, fatal func(error)) error {
	w := r.newWorker(false)
	hook := func(a nflog.Attribute) int {
		if a.Payload == nil {
			r.errs.Add(1)
			return 0
		}
		var in, out uint32
		if a.InDev != nil {
			in = *a.InDev
		}
		if a.OutDev != nil {
			out = *a.OutDev
		}
		ts := time.Now()
		if a.Timestamp != nil {
			ts = *a.Timestamp
		}
		r.copies.Add(1)
		w.handle(ts, *a.Payload, in, out)
		return 0
	}
	onErr := flow.NFLogErrors(ctx, "idsagent", r.cfg.LogGroup, &r.overruns, r.log, func(err error) {
		fatal(fmt.Errorf("idsagent: nflog group %d: %w", r.cfg.LogGroup, err))
	})
	if err := nf.RegisterWithErrorFunc(ctx, hook, onErr); err != nil {
		return fmt.Errorf("idsagent: nflog group %d: %w", r.cfg.LogGroup, err)
	}
	return nil
}

// readQueue answers one queue's packets until ctx is done.
func (r *Reader) readQueue(ctx context.Context, qc *nfq.Conn) error {
	// Receive blocks this thread in the kernel (see nfq.Conn.Receive).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := r.newWorker(true)
	answer := func(p *nfq.Packet) {
		r.queued.Add(1)
		verdict, mark := uint32(nfq.Accept), p.Mark
		if w.handle(time.Now(), p.Payload, p.InDev, p.OutDev) != ids.VerdictPass {
			// Back through the inspection chain, which marks the flow
			// and resets or drops (nft.MarkIDSBlock).
			verdict, mark = nfq.Repeat, p.Mark|uint32(nft.MarkIDSBlock)
			r.blocks.Add(1)
		}
		if err := qc.Verdict(p.ID, verdict, mark); err != nil {
			r.errs.Add(1)
			r.log.Debug("idsagent: verdict", "queue", qc.Queue(), "err", err)
		}
	}
	for ctx.Err() == nil {
		if err := qc.Receive(answer); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.errs.Add(1)
			return fmt.Errorf("idsagent: queue %d: %w", qc.Queue(), err)
		}
	}
	return nil
}

func (r *Reader) logStats(ctx context.Context) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	var last Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s := r.Stats(); s != last {
				r.log.Info("IDS reader", "version", r.Version(), "stats", fmt.Sprintf("%+v", s))
				last = s
			}
		}
	}
}

// emit hands one alert to the sink and the EVE log.
func (r *Reader) emit(a *ids.Alert) {
	eve, err := json.Marshal(a.EVE())
	if err != nil {
		r.errs.Add(1)
		return
	}
	r.alerts.Add(1)
	r.cfg.Sink(eve)
	r.eveMu.Lock()
	if r.eve != nil {
		if _, err := r.eve.Write(append(eve, '\n')); err != nil {
			r.errs.Add(1)
		}
	}
	r.eveMu.Unlock()
}
