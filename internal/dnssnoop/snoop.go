package dnssnoop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	nflog "github.com/florianl/go-nflog/v2"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// SnooperConfig configures a Snooper. Zero values take defaults.
type SnooperConfig struct {
	// NetNS is a descriptor of the namespace whose NFLOG group is read;
	// 0 means the caller's.
	NetNS int
	// Group and SnapLen must agree with the CaptureConfig. Defaults 101
	// and 65535.
	Group   uint16
	SnapLen uint32
	// Resolvers, if not empty, are the only sources whose answers count;
	// others are counted as Foreign and ignored.
	Resolvers []netip.Prefix
	// MaxTCPFlows bounds the DNS-over-TCP streams reassembled at once.
	// Default 256.
	MaxTCPFlows int
	// TCPIdle forgets a stream without segments for this long. Default 30s.
	TCPIdle time.Duration
	// ExpireEvery is how often Run sweeps the cache. Default 5s.
	ExpireEvery time.Duration
	// OnChange is called, on the reader's goroutine, with the addresses
	// whose names gained a pair or a later expiry (Sets.Notify fits). The
	// slice is reused afterwards.
	OnChange func(ips []netip.Addr)
	Log      *slog.Logger
}

// Snooper defaults.
const (
	DefaultMaxTCPFlows = 256
	DefaultTCPIdle     = 30 * time.Second
	DefaultExpireEvery = 5 * time.Second
)

func (c *SnooperConfig) check() error {
	if c.NetNS < 0 {
		return fmt.Errorf("dnssnoop: snooper: netns fd %d: invalid", c.NetNS)
	}
	if c.MaxTCPFlows < 0 || c.TCPIdle < 0 || c.ExpireEvery < 0 {
		return errors.New("dnssnoop: snooper: negative bound")
	}
	if c.Group == 0 {
		c.Group = DefaultGroup
	}
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.MaxTCPFlows == 0 {
		c.MaxTCPFlows = DefaultMaxTCPFlows
	}
	if c.TCPIdle == 0 {
		c.TCPIdle = DefaultTCPIdle
	}
	if c.ExpireEvery == 0 {
		c.ExpireEvery = DefaultExpireEvery
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// Snooper turns logged DNS answer packets into cache entries. Handle is
// the per-packet path; one goroutine (Run's reader) calls it.
type Snooper struct {
	cfg   SnooperConfig
	cache *Cache
	ans   Answer
	seg   segment
	tcp   *Reassembler
	chg   []netip.Addr
	now   time.Time
	ready chan struct{}

	packets, answers, malformed, fragments, notDNS, badMessages, foreign, overruns atomic.Uint64
	tcpMessages, tcpGaps, tcpOverflows, tcpRefused                                 atomic.Uint64
}

// SnooperStats are a Snooper's counters.
type SnooperStats struct {
	// Packets counts packets handled; Answers DNS responses parsed and
	// offered to the cache.
	Packets, Answers uint64
	// Malformed counts packets whose IP/UDP/TCP headers did not decode;
	// Fragments IP fragments (not reassembled); NotDNS other protocols or
	// ports; BadMessages DNS messages that did not parse; Foreign answers
	// from outside Resolvers.
	Malformed, Fragments, NotDNS, BadMessages, Foreign uint64
	// TCPMessages counts messages reassembled from TCP; TCPGaps streams
	// broken by a missed segment; TCPOverflows streams beyond one message's
	// size; TCPRefused streams not followed (too many at once).
	TCPMessages, TCPGaps, TCPOverflows, TCPRefused uint64
	// Overruns counts times the kernel dropped log messages (ENOBUFS).
	Overruns uint64
}

// NewSnooper checks cfg and returns a snooper feeding cache.
func NewSnooper(cfg SnooperConfig, cache *Cache) (*Snooper, error) {
	if cache == nil {
		return nil, errors.New("dnssnoop: snooper: a cache is required")
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Snooper{cfg: cfg, cache: cache, tcp: NewReassembler(cfg.MaxTCPFlows, cfg.TCPIdle), ready: make(chan struct{})}, nil
}

// Ready is closed once Run is bound to its NFLOG group.
func (s *Snooper) Ready() <-chan struct{} { return s.ready }

// Stats returns the counters.
func (s *Snooper) Stats() SnooperStats {
	return SnooperStats{
		Packets: s.packets.Load(), Answers: s.answers.Load(),
		Malformed: s.malformed.Load(), Fragments: s.fragments.Load(), NotDNS: s.notDNS.Load(),
		BadMessages: s.badMessages.Load(), Foreign: s.foreign.Load(),
		TCPMessages: s.tcpMessages.Load(), TCPGaps: s.tcpGaps.Load(),
		TCPOverflows: s.tcpOverflows.Load(), TCPRefused: s.tcpRefused.Load(),
		Overruns: s.overruns.Load(),
	}
}

// Handle reads one logged packet (from its network header). A UDP answer
// for names and addresses the cache already holds allocates nothing.
func (s *Snooper) Handle(pkt []byte, now time.Time) {
	s.packets.Add(1)
	seg := &s.seg
	if err := seg.decode(pkt); err != nil {
		switch err {
		case ErrFragment:
			s.fragments.Add(1)
		case ErrNotDNS:
			s.notDNS.Add(1)
		default:
			s.malformed.Add(1)
		}
		return
	}
	if !s.fromResolver(seg.src) {
		s.foreign.Add(1)
		return
	}
	s.now = now
	if !seg.tcp {
		s.message(seg.payload)
		return
	}
	s.tcp.add(seg, now, s.message)
	s.tcpMessages.Store(s.tcp.Messages)
	s.tcpGaps.Store(s.tcp.Gaps)
	s.tcpOverflows.Store(s.tcp.Overflows)
	s.tcpRefused.Store(s.tcp.Refused)
}

func (s *Snooper) fromResolver(a netip.Addr) bool {
	if len(s.cfg.Resolvers) == 0 {
		return true
	}
	for _, p := range s.cfg.Resolvers {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// message handles one whole DNS message.
func (s *Snooper) message(msg []byte) {
	if err := s.ans.Parse(msg); err != nil {
		n := s.badMessages.Add(1)
		if n&(n-1) == 0 { // 1, 2, 4, ...: a flood of bad answers is not a flood of logs
			s.cfg.Log.Warn("dnssnoop: answer not parsed", "err", s.ans.Describe(err), "src", s.seg.src.String(), "count", n)
		}
		return
	}
	s.answers.Add(1)
	s.chg = s.cache.Add(&s.ans, s.now, s.chg[:0])
	if len(s.chg) > 0 && s.cfg.OnChange != nil {
		s.cfg.OnChange(s.chg)
	}
}

// Run reads the NFLOG group until ctx is done, and sweeps the cache and
// idle TCP streams every ExpireEvery. It returns an error if it cannot bind
// the group or the socket fails beyond recovery.
func (s *Snooper) Run(ctx context.Context) error {
	nf, err := flow.OpenNFLog(&nflog.Config{
		NetNS:    s.cfg.NetNS,
		Group:    s.cfg.Group,
		Copymode: nflog.CopyPacket,
		Bufsize:  s.cfg.SnapLen,
		QThresh:  1,
	}, "dnssnoop", s.cfg.Log)
	if err != nil {
		return err
	}
	defer nf.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fatal := make(chan error, 1)
	// The hook runs on go-nflog's single reader goroutine; the sweep below
	// needs the reassembler too, so it is handed over through a channel.
	sweep := make(chan time.Time, 1)
	hook := func(a nflog.Attribute) int {
		select {
		case t := <-sweep:
			s.tcp.expire(t)
		default:
		}
		if a.Payload == nil {
			s.malformed.Add(1)
			return 0
		}
		now := time.Now()
		if a.Timestamp != nil {
			now = *a.Timestamp
		}
		s.Handle(*a.Payload, now)
		return 0
	}
	onErr := flow.NFLogErrors(ctx, "dnssnoop", s.cfg.Group, &s.overruns, s.cfg.Log, func(err error) { fatal <- err })
	if err := nf.RegisterWithErrorFunc(ctx, hook, onErr); err != nil {
		return fmt.Errorf("dnssnoop: nflog group %d: %w", s.cfg.Group, err)
	}
	close(s.ready)
	tick := time.NewTicker(s.cfg.ExpireEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return fmt.Errorf("dnssnoop: nflog group %d: %w", s.cfg.Group, err)
		case t := <-tick.C:
			s.cache.Expire(t)
			select {
			case sweep <- t:
			default:
			}
		}
	}
}
