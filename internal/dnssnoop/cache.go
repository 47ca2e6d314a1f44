package dnssnoop

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// CacheConfig bounds a Cache. Zero values take the defaults.
type CacheConfig struct {
	// Grace is added to every record's TTL: a client may use an answer a
	// little past its TTL (and a connection it opened just before expiry
	// must not lose its first packets). Default 30s.
	Grace time.Duration
	// MaxTTL clamps the TTLs a resolver claims. Default 24h.
	MaxTTL time.Duration
	// MaxEntries bounds the (name, address) pairs kept. Default 65536.
	MaxEntries int
	// MaxNamesPerIP bounds the names one address answers for; a new name
	// beyond it is refused. Default 32.
	MaxNamesPerIP int
	// MaxIPsPerName bounds the addresses of one name; a new address beyond
	// it evicts the one that expires first. Default 64.
	MaxIPsPerName int
	// MaxChain bounds the CNAMEs followed from the question. Default 8.
	MaxChain int
	// OnShared, if set, is called (outside the cache's lock) when an
	// answer gives an address a new name while it already answers for
	// names of other questions (not those of the answer's own CNAME
	// chain): the address serves several names, so a rule on one lets the
	// others through too. name is the question; names counts the
	// address's live names.
	OnShared func(ip netip.Addr, name string, names int)
}

// Default cache bounds.
const (
	DefaultGrace         = 30 * time.Second
	DefaultMaxTTL        = 24 * time.Hour
	DefaultMaxEntries    = 65536
	DefaultMaxNamesPerIP = 32
	DefaultMaxIPsPerName = 64
	DefaultMaxChain      = 8
	maxChainLimit        = 32
)

func (c *CacheConfig) check() error {
	if c.Grace < 0 || c.MaxTTL < 0 || c.MaxEntries < 0 || c.MaxNamesPerIP < 0 || c.MaxIPsPerName < 0 || c.MaxChain < 0 {
		return errors.New("dnssnoop: cache config: negative bound")
	}
	if c.MaxChain > maxChainLimit {
		return fmt.Errorf("dnssnoop: cache config: maxChain %d: at most %d", c.MaxChain, maxChainLimit)
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxNamesPerIP == 0 {
		c.MaxNamesPerIP = DefaultMaxNamesPerIP
	}
	if c.MaxIPsPerName == 0 {
		c.MaxIPsPerName = DefaultMaxIPsPerName
	}
	if c.MaxChain == 0 {
		c.MaxChain = DefaultMaxChain
	}
	return nil
}

// Cache keeps, for every address a snooped answer gave, the names it
// answers for, each until its own TTL plus the grace. A name is bound to an
// address when the address is reached from it through the answer's CNAME
// chain: the question and every CNAME target on the way are bound, each
// with the smallest TTL between it and the address record. Records off the
// chain are ignored, so a resolver cannot plant an address under a name
// nobody asked for. It is safe for concurrent use.
type Cache struct {
	cfg CacheConfig

	mu        sync.Mutex
	byIP      map[netip.Addr]*ipEntry
	byName    map[string]*nameEntry
	entries   int
	lastSweep int64
	st        CacheStats
}

type nameEntry struct {
	name string
	ips  []ipExp
}

type ipEntry struct {
	names []nameExp
}

func (ie *ipEntry) live(now int64) int {
	n := 0
	for _, b := range ie.names {
		if b.exp > now {
			n++
		}
	}
	return n
}

type ipExp struct {
	ip  netip.Addr
	exp int64 // unix nanoseconds
}

type nameExp struct {
	e   *nameEntry
	exp int64
}

// CacheStats are a Cache's counters and sizes.
type CacheStats struct {
	// Entries, IPs and Names are the live sizes.
	Entries, IPs, Names int
	// Answers counts responses offered; Ignored those not used (an error
	// code, not class IN).
	Answers, Ignored uint64
	// Added counts new (name, address) pairs; Refreshed pairs whose expiry
	// a later answer moved on.
	Added, Refreshed uint64
	// Unrelated counts answer records off the question's CNAME chain.
	Unrelated uint64
	// ChainTooLong counts answers whose chain went beyond MaxChain.
	ChainTooLong uint64
	// Refused counts pairs refused because the cache was full;
	// RefusedNamesPerIP those refused by MaxNamesPerIP.
	Refused, RefusedNamesPerIP uint64
	// EvictedIPsPerName counts addresses dropped from a name by
	// MaxIPsPerName.
	EvictedIPsPerName uint64
	// Expired counts pairs removed after their expiry.
	Expired uint64
	// Shared counts answers that gave an address a new name while it
	// already answered for names of other questions.
	Shared uint64
}

// NewCache checks cfg and returns an empty cache.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Cache{cfg: cfg, byIP: map[netip.Addr]*ipEntry{}, byName: map[string]*nameEntry{}}, nil
}

// Config returns the configuration with defaults applied.
func (c *Cache) Config() CacheConfig { return c.cfg }

type shared struct {
	ip    netip.Addr
	name  string
	names int
}

// Add takes one parsed response and appends to changed every address
// whose names gained a pair or a later expiry. A pair already known with an
// expiry as late allocates nothing.
func (c *Cache) Add(a *Answer, now time.Time, changed []netip.Addr) []netip.Addr {
	var events [4]shared
	nev := 0
	c.mu.Lock()
	c.st.Answers++
	if a.Header.RCode != 0 || a.QClass != ClassIN {
		c.st.Ignored++
		c.mu.Unlock()
		return changed
	}
	var (
		chain  [maxChainLimit + 1]*Name
		minTTL [maxChainLimit + 1]uint32 // smallest CNAME TTL from chain[k] to the current name
		used   int
	)
	chain[0], minTTL[0] = &a.Question, ^uint32(0)
	depth := 0
	nowNs := now.UnixNano()
	for {
		cur := chain[depth]
		var next *Record
		for i := range a.Records {
			r := &a.Records[i]
			if !r.Name.Equal(cur) {
				continue
			}
			if r.Type == TypeCNAME {
				if next == nil {
					next = r
					used++
				}
				continue
			}
			used++
			added := false
			for k := 0; k <= depth; k++ {
				ttl := min(r.TTL, minTTL[k])
				isNew, ok := c.bind(chain[k].Bytes(), r.Addr, c.expiry(nowNs, ttl), nowNs)
				if ok {
					changed = appendOnce(changed, r.Addr)
				}
				added = added || isNew
			}
			if added {
				// Names of this answer's own chain do not make the
				// address shared; names of other questions do.
				if others, total := c.otherNames(r.Addr, chain[:depth+1], nowNs); others > 0 {
					c.st.Shared++
					if nev < len(events) {
						events[nev] = shared{ip: r.Addr, name: chain[0].String(), names: total}
						nev++
					}
				}
			}
		}
		if next == nil {
			break
		}
		if depth == c.cfg.MaxChain {
			c.st.ChainTooLong++
			break
		}
		for k := 0; k <= depth; k++ {
			minTTL[k] = min(minTTL[k], next.TTL)
		}
		depth++
		chain[depth], minTTL[depth] = &next.Target, ^uint32(0)
	}
	c.st.Unrelated += uint64(len(a.Records) - used)
	c.mu.Unlock()
	if c.cfg.OnShared != nil {
		for _, ev := range events[:nev] {
			c.cfg.OnShared(ev.ip, ev.name, ev.names)
		}
	}
	return changed
}

func appendOnce(s []netip.Addr, ip netip.Addr) []netip.Addr {
	for _, x := range s {
		if x == ip {
			return s
		}
	}
	return append(s, ip)
}

func (c *Cache) expiry(nowNs int64, ttl uint32) int64 {
	d := min(time.Duration(ttl)*time.Second, c.cfg.MaxTTL)
	return nowNs + int64(d+c.cfg.Grace)
}

// bind records (name, ip) until exp. changed: the pair is new or its
// expiry moved on; isNew: the pair is new.
func (c *Cache) bind(name []byte, ip netip.Addr, exp, now int64) (isNew, changed bool) {
	ne := c.byName[string(name)]
	if ne != nil {
		for i := range ne.ips {
			if ne.ips[i].ip != ip {
				continue
			}
			if ne.ips[i].exp >= exp {
				return false, false
			}
			ne.ips[i].exp = exp
			ie := c.byIP[ip]
			for j := range ie.names {
				if ie.names[j].e == ne {
					ie.names[j].exp = exp
				}
			}
			c.st.Refreshed++
			return false, true
		}
	}
	if c.entries >= c.cfg.MaxEntries && now-c.lastSweep > int64(time.Second) {
		// A sweep is O(entries): at most once a second under pressure.
		c.expireLocked(now)
	}
	if c.entries >= c.cfg.MaxEntries {
		c.st.Refused++
		return false, false
	}
	if ie := c.byIP[ip]; ie != nil && ie.live(now) >= c.cfg.MaxNamesPerIP {
		c.dropExpiredOf(ip, ie, now)
		if ie.live(now) >= c.cfg.MaxNamesPerIP {
			c.st.RefusedNamesPerIP++
			return false, false
		}
	}
	// Looked up again: a sweep may have removed them.
	ne = c.byName[string(name)]
	if ne == nil {
		ne = &nameEntry{name: string(name)}
	}
	if len(ne.ips) >= c.cfg.MaxIPsPerName {
		first := 0
		for i := range ne.ips {
			if ne.ips[i].exp < ne.ips[first].exp {
				first = i
			}
		}
		c.unbind(ne, first)
		c.st.EvictedIPsPerName++
	}
	c.byName[ne.name] = ne
	ie := c.byIP[ip]
	if ie == nil {
		ie = &ipEntry{}
		c.byIP[ip] = ie
	}
	ne.ips = append(ne.ips, ipExp{ip: ip, exp: exp})
	ie.names = append(ie.names, nameExp{e: ne, exp: exp})
	c.entries++
	c.st.Added++
	return true, true
}

// otherNames counts ip's live names outside chain, and all its live names.
func (c *Cache) otherNames(ip netip.Addr, chain []*Name, now int64) (others, total int) {
	ie := c.byIP[ip]
	if ie == nil {
		return 0, 0
	}
next:
	for _, b := range ie.names {
		if b.exp <= now {
			continue
		}
		total++
		for _, n := range chain {
			if string(n.Bytes()) == b.e.name {
				continue next
			}
		}
		others++
	}
	return others, total
}

// unbind removes ne.ips[i] and its mirror in the address's entry.
func (c *Cache) unbind(ne *nameEntry, i int) {
	ip := ne.ips[i].ip
	ne.ips = deleteAt(ne.ips, i)
	if ie := c.byIP[ip]; ie != nil {
		for j := range ie.names {
			if ie.names[j].e == ne {
				ie.names = deleteAt(ie.names, j)
				break
			}
		}
		if len(ie.names) == 0 {
			delete(c.byIP, ip)
		}
	}
	if len(ne.ips) == 0 {
		delete(c.byName, ne.name)
	}
	c.entries--
}

func (c *Cache) dropExpiredOf(ip netip.Addr, ie *ipEntry, now int64) {
	for j := 0; j < len(ie.names); {
		b := ie.names[j]
		if b.exp > now {
			j++
			continue
		}
		found := false
		for i := range b.e.ips {
			if b.e.ips[i].ip == ip {
				c.unbind(b.e, i)
				c.st.Expired++
				found = true
				break
			}
		}
		if !found {
			j++ // not mirrored (cannot happen); never loop on it
		}
	}
}

func deleteAt[T any](s []T, i int) []T {
	copy(s[i:], s[i+1:])
	var zero T
	s[len(s)-1] = zero
	return s[:len(s)-1]
}

// Expire removes every pair whose expiry passed and returns how many.
func (c *Cache) Expire(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expireLocked(now.UnixNano())
}

func (c *Cache) expireLocked(now int64) int {
	c.lastSweep = now
	n := 0
	for _, ne := range c.byName {
		for i := 0; i < len(ne.ips); {
			if ne.ips[i].exp > now {
				i++
				continue
			}
			c.unbind(ne, i)
			n++
			if len(ne.ips) == 0 {
				break
			}
		}
	}
	c.st.Expired += uint64(n)
	return n
}

// Binding is one name of an address, until when.
type Binding struct {
	Name    string
	Expires time.Time
}

// AppendNames appends the live names of ip. It allocates only to grow dst.
func (c *Cache) AppendNames(dst []Binding, ip netip.Addr, now time.Time) []Binding {
	c.mu.Lock()
	defer c.mu.Unlock()
	ie := c.byIP[ip]
	if ie == nil {
		return dst
	}
	n := now.UnixNano()
	for _, b := range ie.names {
		if b.exp > n {
			dst = append(dst, Binding{Name: b.e.name, Expires: time.Unix(0, b.exp)})
		}
	}
	return dst
}

// AppendIPs appends the live addresses of a name (normalized: lower case,
// no final dot).
func (c *Cache) AppendIPs(dst []netip.Addr, name string, now time.Time) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	ne := c.byName[name]
	if ne == nil {
		return dst
	}
	n := now.UnixNano()
	for _, b := range ne.ips {
		if b.exp > n {
			dst = append(dst, b.ip)
		}
	}
	return dst
}

// AppendAddrs appends every address with at least one live name.
func (c *Cache) AppendAddrs(dst []netip.Addr, now time.Time) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := now.UnixNano()
	for ip, ie := range c.byIP {
		for _, b := range ie.names {
			if b.exp > n {
				dst = append(dst, ip)
				break
			}
		}
	}
	return dst
}

// Stats returns the counters and the current sizes.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.st
	s.Entries, s.IPs, s.Names = c.entries, len(c.byIP), len(c.byName)
	return s
}
