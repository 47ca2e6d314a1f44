package flow

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Sender delivers a batch of records to the manager. A nil error means the
// manager has them (stored, or will store them); any error means they may
// not have arrived, and the same batch is sent again. The manager merges
// by record ID, so a batch that arrived but whose answer was lost does no
// harm when sent twice.
type Sender interface {
	Send(ctx context.Context, recs []Record) error
}

// ShipperConfig configures the batching loop. Zero values take defaults.
type ShipperConfig struct {
	// MaxBatch is the most records in one Send. Default 2000.
	MaxBatch int
	// MaxDelay is how long a record may wait for a batch to fill.
	// Default 1s.
	MaxDelay time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed Send; it
	// doubles from one to the other, with jitter. Defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// SendTimeout bounds one Send. Default 30s.
	SendTimeout time.Duration
	Log         *slog.Logger
}

func (c *ShipperConfig) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 2000
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 250 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(30*time.Second, c.MinBackoff)
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Shipper moves records from a Buffer to a Sender in batches of up to
// MaxBatch records or MaxDelay of waiting, whichever comes first. A batch
// that fails is retried with backoff until it is delivered; it is never
// dropped. On shutdown an undelivered batch goes back to the front of the
// buffer, so a later Shipper on the same buffer delivers it.
type Shipper struct {
	buf  *Buffer
	send Sender
	cfg  ShipperConfig

	mu    sync.Mutex
	stats ShipperStats
}

// ShipperStats are the shipper's counters.
type ShipperStats struct {
	// Batches and Records count what the Sender acknowledged.
	Batches uint64
	Records uint64
	// Failures counts failed Sends; each is retried.
	Failures uint64
	// InFlight is the size of the batch being sent or retried.
	InFlight  int
	LastError string
}

// NewShipper returns a shipper from buf to s.
func NewShipper(buf *Buffer, s Sender, cfg ShipperConfig) *Shipper {
	cfg.defaults()
	return &Shipper{buf: buf, send: s, cfg: cfg}
}

// Stats returns the shipper's counters.
func (s *Shipper) Stats() ShipperStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run ships until ctx is done. It returns nil then; records still waiting
// stay in the buffer.
func (s *Shipper) Run(ctx context.Context) error {
	batch := make([]Record, 0, s.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	backoff := s.cfg.MinBackoff
	for {
		if len(batch) == 0 {
			var ok bool
			if batch, ok = s.fill(ctx, batch, timer); !ok {
				return nil
			}
			s.setInFlight(len(batch))
		}
		err := s.sendOnce(ctx, batch)
		if err == nil {
			s.mu.Lock()
			s.stats.Batches++
			s.stats.Records += uint64(len(batch))
			s.stats.InFlight = 0
			s.mu.Unlock()
			clear(batch) // release the records' strings
			batch = batch[:0]
			backoff = s.cfg.MinBackoff
			continue
		}
		if ctx.Err() != nil {
			s.buf.Requeue(batch)
			s.setInFlight(0)
			return nil
		}
		s.mu.Lock()
		s.stats.Failures++
		s.stats.LastError = err.Error()
		fails := s.stats.Failures
		s.mu.Unlock()
		// One line per failure would flood the log during an outage.
		if fails&(fails-1) == 0 {
			s.cfg.Log.Warn("flow: send failed; retrying", "records", len(batch), "waiting", s.buf.Len(), "failures", fails, "err", err)
		}
		// Full jitter keeps a fleet of agents from retrying in step when
		// the manager comes back.
		wait := backoff/2 + rand.N(backoff/2+1)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			s.buf.Requeue(batch)
			s.setInFlight(0)
			return nil
		case <-timer.C:
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

func (s *Shipper) setInFlight(n int) {
	s.mu.Lock()
	s.stats.InFlight = n
	s.mu.Unlock()
}

func (s *Shipper) sendOnce(ctx context.Context, batch []Record) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	return s.send.Send(ctx, batch)
}

// fill waits until a batch is due and takes it: MaxBatch records waiting,
// or MaxDelay since the first of them arrived.
func (s *Shipper) fill(ctx context.Context, batch []Record, timer *time.Timer) ([]Record, bool) {
	var deadline time.Time
	for {
		n := s.buf.Len()
		if n >= s.cfg.MaxBatch || (n > 0 && !deadline.IsZero() && !time.Now().Before(deadline)) {
			timer.Stop()
			return s.buf.Take(batch, s.cfg.MaxBatch), true
		}
		if n > 0 && deadline.IsZero() {
			deadline = time.Now().Add(s.cfg.MaxDelay)
			timer.Reset(s.cfg.MaxDelay)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return batch, false
		case <-s.buf.Ready():
		case <-timer.C:
		}
	}
}
