package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
)

// DropReaderConfig configures a DropReader. Zero values take defaults.
type DropReaderConfig struct {
	// Host names this host in every record. Required.
	Host string
	// NetNS is a file descriptor of the network namespace whose NFLOG
	// group is read; 0 means the caller's.
	NetNS int
	// Group is the NFLOG group the data plane sends drops and rejects to.
	// Required (the nft data plane's default is 100).
	Group uint16
	// Window is how long drops of one key are folded into one record.
	// Default 5s.
	Window time.Duration
	// MaxKeys bounds the distinct keys of one window. Default 4096.
	MaxKeys int
	// SnapLen is how many bytes of each packet the kernel copies: the
	// headers are enough. Default 128.
	SnapLen uint32
	// DecodeMark reads the rule id and verdict out of the packet mark.
	// Required.
	DecodeMark MarkDecoder
	// Workload names local workloads' addresses. May be nil.
	Workload func(netip.Addr) string
	Log      *slog.Logger
}

func (c *DropReaderConfig) check() error {
	if c.Host == "" {
		return errors.New("flow: drop reader: host must not be empty")
	}
	if c.Group == 0 {
		return errors.New("flow: drop reader: NFLOG group must not be 0")
	}
	if c.DecodeMark == nil {
		return errors.New("flow: drop reader: a mark decoder is required")
	}
	if c.Window <= 0 {
		c.Window = DefaultDropWindow
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultDropKeys
	}
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// DropReader reads the packets the data plane dropped or rejected from an
// NFLOG group and turns them into drop records, aggregated per window.
// The rule id and verdict come from the packet mark, since this kernel's
// NFLOG cannot carry the conntrack mark.
type DropReader struct {
	cfg   DropReaderConfig
	agg   *Aggregator
	ready chan struct{}

	packets   atomic.Uint64
	malformed atomic.Uint64
	unmarked  atomic.Uint64
	overruns  atomic.Uint64
}

// DropReaderStats are the drop reader's counters.
type DropReaderStats struct {
	// Packets counts packets read and aggregated.
	Packets uint64
	// Malformed counts packets whose headers could not be decoded.
	Malformed uint64
	// Unmarked counts packets without a rule id: not logged by Bulkhead.
	Unmarked uint64
	// Overruns counts times the kernel dropped log messages because we
	// were slow (ENOBUFS).
	Overruns uint64
	// EarlyFlushes counts windows closed early by too many keys.
	EarlyFlushes uint64
}

// NewDropReader checks cfg and returns a reader that pushes to out.
func NewDropReader(cfg DropReaderConfig, out *Buffer) (*DropReader, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &DropReader{cfg: cfg, agg: NewAggregator(cfg.Host, cfg.MaxKeys, cfg.Workload, out), ready: make(chan struct{})}, nil
}

// Ready is closed once the reader is bound to its group.
func (d *DropReader) Ready() <-chan struct{} { return d.ready }

// Stats returns the reader's counters.
func (d *DropReader) Stats() DropReaderStats {
	return DropReaderStats{
		Packets:      d.packets.Load(),
		Malformed:    d.malformed.Load(),
		Unmarked:     d.unmarked.Load(),
		Overruns:     d.overruns.Load(),
		EarlyFlushes: d.agg.EarlyFlushes(),
	}
}

// Handle decodes one logged packet and counts it. It is the per-packet
// path and allocates nothing once the packet's key is in the window.
func (d *DropReader) Handle(payload []byte, mark uint32, now time.Time) {
	rule, v := d.cfg.DecodeMark(mark)
	if rule == 0 {
		d.unmarked.Add(1)
		return
	}
	var p Packet
	if err := p.Decode(payload); err != nil {
		d.malformed.Add(1)
		return
	}
	d.packets.Add(1)
	d.agg.Add(&p, rule, v, now)
}

// Run reads until ctx is done, then closes the last window. It returns an
// error if it cannot bind the group or the socket fails beyond recovery.
func (d *DropReader) Run(ctx context.Context) error {
	nf, err := OpenNFLog(&nflog.Config{
		NetNS:    d.cfg.NetNS,
		Group:    d.cfg.Group,
		Copymode: nflog.CopyPacket,
		Bufsize:  d.cfg.SnapLen,
	}, "flow", d.cfg.Log)
	if err != nil {
		return err
	}
	defer d.agg.Flush()
	defer nf.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fatal := make(chan error, 1)
	hook := func(a nflog.Attribute) int {
		if a.Payload == nil {
			d.malformed.Add(1)
			return 0
		}
		var mark uint32
		if a.Mark != nil {
			mark = *a.Mark
		}
		now := time.Now()
		if a.Timestamp != nil {
			now = *a.Timestamp
		}
		d.Handle(*a.Payload, mark, now)
		return 0
	}
	onErr := NFLogErrors(ctx, "flow", d.cfg.Group, &d.overruns, d.cfg.Log, func(err error) { fatal <- err })
	if err := nf.RegisterWithErrorFunc(ctx, hook, onErr); err != nil {
		return fmt.Errorf("flow: nflog group %d: %w", d.cfg.Group, err)
	}
	close(d.ready)

	tick := time.NewTicker(d.cfg.Window)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return fmt.Errorf("flow: nflog group %d: %w", d.cfg.Group, err)
		case <-tick.C:
			d.agg.Flush()
		}
	}
}
