package dnssnoop

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
)

// SetGroup is one FQDN pattern group and the two nftables sets (type
// ipv4_addr and ipv6_addr, flags timeout) that hold its addresses.
type SetGroup struct {
	Set4, Set6 string
	FQDNs      []string
}

// SetsConfig says where the sets live.
type SetsConfig struct {
	// NetNS is a descriptor of the network namespace; 0 means the caller's.
	NetNS int
	// Table is the inet table the sets are in (the data plane's, whose
	// rules look them up: "ip daddr @Set4").
	Table  string
	Groups []SetGroup
	// Size bounds each set's elements in the kernel. Default 65536.
	Size uint32
}

// Sets keeps one pair of nftables sets per FQDN pattern group filled with
// the addresses the cache binds to matching names. Each element is written
// with a timeout of its latest matching name's expiry (TTL plus grace), so
// the kernel forgets an address by itself; an answer that renews a name
// rewrites the element with the later timeout. It is safe for concurrent
// use.
type Sets struct {
	cfg   SetsConfig
	cache *Cache
	m     *Matcher
	sets  [][2]*nftables.Set // per group: v4, v6

	mu      sync.Mutex // serializes writes
	written map[setKey]time.Time
	scratch Scratch
	mem     []Membership

	qmu   sync.Mutex
	dirty map[netip.Addr]struct{}
	wake  chan struct{}

	writes, elements, failures atomic.Uint64
	lastErr                    atomic.Pointer[error]
}

type setKey struct {
	group int
	ip    netip.Addr
}

// SetsStats are the writer's counters.
type SetsStats struct {
	// Batches counts netlink batches sent; Elements element writes in
	// them; Failures batches the kernel refused.
	Batches, Elements, Failures uint64
	// LastError is the last refusal, if any.
	LastError error
}

// refreshSlack: an expiry that moved by less than this is not worth a
// kernel write.
const refreshSlack = time.Second

// NewSets compiles the groups' patterns. It touches nothing in the kernel.
func NewSets(cfg SetsConfig, cache *Cache) (*Sets, error) {
	if cache == nil {
		return nil, errors.New("dnssnoop: sets: a cache is required")
	}
	if cfg.NetNS < 0 {
		return nil, fmt.Errorf("dnssnoop: sets: netns fd %d: invalid", cfg.NetNS)
	}
	if cfg.Table == "" || len(cfg.Table) > 255 || strings.ContainsRune(cfg.Table, 0) {
		return nil, fmt.Errorf("dnssnoop: sets: table %q: invalid name", cfg.Table)
	}
	if cfg.Size == 0 {
		cfg.Size = 65536
	}
	pats := make([][]string, len(cfg.Groups))
	seen := map[string]int{}
	tbl := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	s := &Sets{cfg: cfg, cache: cache, written: map[setKey]time.Time{}, dirty: map[netip.Addr]struct{}{}, wake: make(chan struct{}, 1)}
	for i, g := range cfg.Groups {
		for _, n := range []string{g.Set4, g.Set6} {
			if n == "" || len(n) > 255 || strings.ContainsRune(n, 0) {
				return nil, fmt.Errorf("dnssnoop: sets: group %d: set name %q: invalid", i, n)
			}
			if j, dup := seen[n]; dup {
				return nil, fmt.Errorf("dnssnoop: sets: group %d: set %s already used by group %d", i, n, j)
			}
			seen[n] = i
		}
		pats[i] = g.FQDNs
		// Fixed IDs: the library's global counter is not safe across
		// concurrent connections (see internal/nft).
		id := uint32(0x4000 + 2*i)
		s.sets = append(s.sets, [2]*nftables.Set{
			{Table: tbl, ID: id, Name: g.Set4, KeyType: nftables.TypeIPAddr, HasTimeout: true, Size: cfg.Size},
			{Table: tbl, ID: id + 1, Name: g.Set6, KeyType: nftables.TypeIP6Addr, HasTimeout: true, Size: cfg.Size},
		})
	}
	m, err := NewMatcher(pats)
	if err != nil {
		return nil, fmt.Errorf("dnssnoop: sets: %w", err)
	}
	s.m = m
	return s, nil
}

// Matcher returns the compiled patterns (group i is SetsConfig.Groups[i]).
func (s *Sets) Matcher() *Matcher { return s.m }

// Ensure creates the table if it is missing and every set that is missing;
// existing ones and their elements are left alone. The data plane may
// instead declare the sets itself (same types, flags timeout).
func (s *Sets) Ensure() error {
	c, err := dial(s.cfg.NetNS)
	if err != nil {
		return fmt.Errorf("dnssnoop: sets in table %s: %w", s.cfg.Table, err)
	}
	defer c.CloseLasting()
	c.AddTable(&nftables.Table{Name: s.cfg.Table, Family: nftables.TableFamilyINet})
	for _, pair := range s.sets {
		for _, set := range pair {
			if err := c.AddSet(set, nil); err != nil {
				return fmt.Errorf("dnssnoop: set %s: %w", set.Name, err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("dnssnoop: sets in table %s: %w", s.cfg.Table, err)
	}
	return nil
}

// Update writes the group memberships of ips as of now, in one batch. An
// element already written with an expiry as late is not written again.
func (s *Sets) Update(ips []netip.Addr, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update(ips, now)
}

// Sync forgets what was written and writes every address the cache holds:
// after the table was replaced (the data plane's full apply) or at start.
func (s *Sets) Sync(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.written)
	return s.update(s.cache.AppendAddrs(nil, now), now)
}

func (s *Sets) update(ips []netip.Addr, now time.Time) error {
	type write struct {
		set     *nftables.Set
		key     []byte
		timeout time.Duration
	}
	var ws []write
	for _, ip := range ips {
		s.mem = s.m.Memberships(s.cache, ip, now, &s.scratch, s.mem[:0])
		for _, mb := range s.mem {
			k := setKey{mb.ID, ip}
			if w, ok := s.written[k]; ok && w.After(now) && !mb.Until.After(w.Add(refreshSlack)) {
				continue
			}
			timeout := mb.Until.Sub(now).Round(time.Millisecond)
			if timeout < time.Millisecond {
				continue // a zero timeout would mean "never"
			}
			set, key := s.sets[mb.ID][1], ip.AsSlice()
			if ip.Is4() || ip.Is4In6() {
				set, key = s.sets[mb.ID][0], ip.Unmap().AsSlice()
			}
			ws = append(ws, write{set, key, timeout})
			s.written[k] = mb.Until
		}
	}
	for k, w := range s.written {
		if !w.After(now) {
			delete(s.written, k)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	c, err := dial(s.cfg.NetNS)
	if err != nil {
		return s.failed(fmt.Errorf("dnssnoop: sets in table %s: %w", s.cfg.Table, err))
	}
	defer c.CloseLasting()
	// Batches of writeChunk elements keep each sendmsg well inside the
	// socket buffer when Sync writes a whole cache.
	for start := 0; start < len(ws); start += writeChunk {
		chunk := ws[start:min(start+writeChunk, len(ws))]
		for _, w := range chunk {
			e := []nftables.SetElement{{Key: w.key, Timeout: w.timeout}}
			// add, delete, add: the element ends up with the new timeout
			// whether or not it existed, in one transaction (a plain add
			// of an existing element keeps its old timeout on older
			// kernels).
			for _, op := range []func(*nftables.Set, []nftables.SetElement) error{c.SetAddElements, c.SetDeleteElements, c.SetAddElements} {
				if err := op(w.set, e); err != nil {
					return s.failed(fmt.Errorf("dnssnoop: set %s: %w", w.set.Name, err))
				}
			}
		}
		s.writes.Add(1)
		if err := c.Flush(); err != nil {
			return s.failed(fmt.Errorf("dnssnoop: sets in table %s: write %d elements: %w", s.cfg.Table, len(chunk), err))
		}
		s.elements.Add(uint64(len(chunk)))
	}
	return nil
}

// writeChunk bounds the elements of one netlink batch.
const writeChunk = 512

// failed counts a refused write and forgets what was written, so that the
// next update writes every element again.
func (s *Sets) failed(err error) error {
	s.failures.Add(1)
	s.lastErr.Store(&err)
	clear(s.written)
	return err
}

// Notify queues addresses for the writer started by Run; it never blocks.
// Its signature fits SnooperConfig.OnChange.
func (s *Sets) Notify(ips []netip.Addr) {
	s.qmu.Lock()
	for _, ip := range ips {
		s.dirty[ip] = struct{}{}
	}
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run writes queued addresses until ctx is done; addresses queued while a
// batch is written go together in the next one. A refused batch is
// counted (Stats) and retried a second later.
func (s *Sets) Run(ctx context.Context) {
	var ips []netip.Addr
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.qmu.Lock()
		ips = ips[:0]
		for ip := range s.dirty {
			ips = append(ips, ip)
		}
		clear(s.dirty)
		s.qmu.Unlock()
		if err := s.Update(ips, time.Now()); err != nil {
			// Try these again in a second (the data plane may be
			// replacing the table); the queue is bounded by the cache.
			retry := append([]netip.Addr(nil), ips...)
			time.AfterFunc(time.Second, func() {
				if ctx.Err() == nil {
					s.Notify(retry)
				}
			})
		}
	}
}

// Stats returns the writer's counters.
func (s *Sets) Stats() SetsStats {
	st := SetsStats{Batches: s.writes.Load(), Elements: s.elements.Load(), Failures: s.failures.Load()}
	if p := s.lastErr.Load(); p != nil {
		st.LastError = *p
	}
	return st
}
