package dnssnoop

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

var t0 = time.Unix(1_700_000_000, 0)

func parsed(t testing.TB, msg []byte) *Answer {
	t.Helper()
	var ans Answer
	if err := ans.Parse(msg); err != nil {
		t.Fatalf("parse: %v", ans.Describe(err))
	}
	return &ans
}

func newCache(t testing.TB, cfg CacheConfig) *Cache {
	t.Helper()
	c, err := NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// names returns ip's live names and their remaining lifetimes at now.
func names(c *Cache, ip string, now time.Time) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, b := range c.AppendNames(nil, netip.MustParseAddr(ip), now) {
		out[b.Name] = b.Expires.Sub(now)
	}
	return out
}

func TestCacheChain(t *testing.T) {
	c := newCache(t, CacheConfig{Grace: 5 * time.Second})
	ans := parsed(t, response(t, 0, "www.example.test.",
		cname("www.example.test.", 30, "edge.cdn.test."),
		cname("edge.cdn.test.", 10, "pop.cdn.test."),
		a("pop.cdn.test.", 60, "192.0.2.10"),
		aaaa("pop.cdn.test.", 2, "2001:db8::10"),
		a("bank.example.", 3600, "198.51.100.66"), // off the chain: planted
	))
	changed := c.Add(ans, t0, nil)
	slices.SortFunc(changed, netip.Addr.Compare)
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}; !slices.Equal(changed, want) {
		t.Errorf("changed %v, want %v", changed, want)
	}
	// Each chain name gets the smallest TTL between it and the address.
	wantV4 := map[string]time.Duration{"www.example.test": 15 * time.Second, "edge.cdn.test": 15 * time.Second, "pop.cdn.test": 65 * time.Second}
	if got := names(c, "192.0.2.10", t0); !mapsEqual(got, wantV4) {
		t.Errorf("192.0.2.10: %v, want %v", got, wantV4)
	}
	wantV6 := map[string]time.Duration{"www.example.test": 7 * time.Second, "edge.cdn.test": 7 * time.Second, "pop.cdn.test": 7 * time.Second}
	if got := names(c, "2001:db8::10", t0); !mapsEqual(got, wantV6) {
		t.Errorf("2001:db8::10: %v, want %v", got, wantV6)
	}
	if got := names(c, "198.51.100.66", t0); len(got) != 0 {
		t.Errorf("planted record was bound: %v", got)
	}
	if got := c.AppendIPs(nil, "www.example.test", t0); len(got) != 2 {
		t.Errorf("www.example.test -> %v", got)
	}
	st := c.Stats()
	if st.Unrelated != 1 || st.Added != 6 || st.Entries != 6 || st.IPs != 2 || st.Names != 3 {
		t.Errorf("stats %+v", st)
	}
	// The AAAA pairs expire after 2s + 5s grace; the A pairs stay.
	if n := c.Expire(t0.Add(7 * time.Second)); n != 3 {
		t.Errorf("expired %d, want 3", n)
	}
	if got := names(c, "2001:db8::10", t0.Add(7*time.Second)); len(got) != 0 {
		t.Errorf("after expiry: %v", got)
	}
	if got := names(c, "192.0.2.10", t0.Add(14*time.Second)); len(got) != 3 {
		t.Errorf("A pairs: %v", got)
	}
}

func mapsEqual(a, b map[string]time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestCacheIgnores(t *testing.T) {
	c := newCache(t, CacheConfig{})
	c.Add(parsed(t, response(t, dnsmessage.RCodeNameError, "nx.example.test.", a("nx.example.test.", 60, "192.0.2.1"))), t0, nil)
	if st := c.Stats(); st.Ignored != 1 || st.Entries != 0 {
		t.Errorf("NXDOMAIN was used: %+v", st)
	}
	// A CNAME loop ends at MaxChain.
	c = newCache(t, CacheConfig{MaxChain: 3})
	c.Add(parsed(t, response(t, 0, "a.test.", cname("a.test.", 60, "b.test."), cname("b.test.", 60, "a.test."), a("a.test.", 60, "192.0.2.1"))), t0, nil)
	if st := c.Stats(); st.ChainTooLong != 1 {
		t.Errorf("loop not cut: %+v", st)
	}
	if got := names(c, "192.0.2.1", t0); len(got) != 2 {
		t.Errorf("loop names %v", got)
	}
}

func TestCacheRefresh(t *testing.T) {
	c := newCache(t, CacheConfig{Grace: time.Second})
	msg := func(ttl uint32) *Answer {
		return parsed(t, response(t, 0, "api.example.test.", a("api.example.test.", ttl, "192.0.2.7")))
	}
	if ch := c.Add(msg(10), t0, nil); len(ch) != 1 {
		t.Fatalf("changed %v", ch)
	}
	// The same answer again: nothing changes.
	if ch := c.Add(msg(10), t0, nil); len(ch) != 0 {
		t.Errorf("repeat changed %v", ch)
	}
	// A shorter TTL does not shorten what was promised.
	if ch := c.Add(msg(2), t0.Add(time.Second), nil); len(ch) != 0 {
		t.Errorf("shorter TTL changed %v", ch)
	}
	// A renewal moves the expiry on.
	if ch := c.Add(msg(10), t0.Add(5*time.Second), nil); len(ch) != 1 {
		t.Errorf("renewal changed %v", ch)
	}
	if got := names(c, "192.0.2.7", t0.Add(5*time.Second)); got["api.example.test"] != 11*time.Second {
		t.Errorf("after renewal %v", got)
	}
	if st := c.Stats(); st.Added != 1 || st.Refreshed != 1 {
		t.Errorf("stats %+v", st)
	}
	// MaxTTL clamps a resolver's claim.
	c = newCache(t, CacheConfig{Grace: time.Second, MaxTTL: time.Minute})
	c.Add(msg(86400*7), t0, nil)
	if got := names(c, "192.0.2.7", t0); got["api.example.test"] != 61*time.Second {
		t.Errorf("clamped %v", got)
	}
}

func TestCacheCaps(t *testing.T) {
	var shared []string
	c := newCache(t, CacheConfig{MaxEntries: 6, MaxNamesPerIP: 2, MaxIPsPerName: 3, Grace: time.Second,
		OnShared: func(ip netip.Addr, name string, n int) { shared = append(shared, ip.String()+" "+name) }})
	add := func(at time.Time, q string, recs ...rec) {
		c.Add(parsed(t, response(t, 0, q, recs...)), at, nil)
	}
	// One name, four addresses: the one expiring first is evicted.
	add(t0, "rr.test.", a("rr.test.", 50, "192.0.2.1"), a("rr.test.", 10, "192.0.2.2"), a("rr.test.", 50, "192.0.2.3"), a("rr.test.", 50, "192.0.2.4"))
	if got := c.AppendIPs(nil, "rr.test", t0); len(got) != 3 || slices.Contains(got, netip.MustParseAddr("192.0.2.2")) {
		t.Errorf("rr.test -> %v", got)
	}
	// One address, three names: the third is refused; the second is shared.
	add(t0, "a.test.", a("a.test.", 50, "192.0.2.1"))
	add(t0, "b.test.", a("b.test.", 50, "192.0.2.1"))
	if got := names(c, "192.0.2.1", t0); len(got) != 2 {
		t.Errorf("192.0.2.1 names %v", got)
	}
	if want := []string{"192.0.2.1 a.test"}; !slices.Equal(shared, want) {
		t.Errorf("shared %v, want %v", shared, want)
	}
	// The cache holds 4 pairs; two more fit, then it is full.
	add(t0, "c.test.", a("c.test.", 5, "192.0.2.9"))
	add(t0, "d.test.", a("d.test.", 50, "192.0.2.8"))
	add(t0, "e.test.", a("e.test.", 50, "192.0.2.7"))
	st := c.Stats()
	if st.EvictedIPsPerName != 1 || st.RefusedNamesPerIP != 1 || st.Refused != 1 || st.Shared != 1 || st.Entries != 6 {
		t.Errorf("stats %+v", st)
	}
	// Once c.test expired, a full cache sweeps and takes the new pair.
	later := t0.Add(10 * time.Second)
	add(later, "e.test.", a("e.test.", 50, "192.0.2.7"))
	if got := names(c, "192.0.2.7", later); len(got) != 1 {
		t.Errorf("after sweep: %v (stats %+v)", got, c.Stats())
	}
	if st := c.Stats(); st.Expired != 1 || st.Entries != 6 {
		t.Errorf("stats after sweep %+v", st)
	}
}

func TestCacheAddNoAllocs(t *testing.T) {
	c := newCache(t, CacheConfig{})
	ans := parsed(t, response(t, 0, "www.example.test.",
		cname("www.example.test.", 30, "edge.cdn.test."), a("edge.cdn.test.", 20, "192.0.2.10"), aaaa("edge.cdn.test.", 20, "2001:db8::10")))
	changed := make([]netip.Addr, 0, 8)
	c.Add(ans, t0, changed)
	if n := testing.AllocsPerRun(1000, func() { c.Add(ans, t0, changed[:0]) }); n != 0 {
		t.Errorf("Add of a known answer allocates %v times", n)
	}
	// A renewal (later expiry) allocates nothing either.
	at := t0
	if n := testing.AllocsPerRun(1000, func() { at = at.Add(time.Second); c.Add(ans, at, changed[:0]) }); n != 0 {
		t.Errorf("Add of a renewal allocates %v times", n)
	}
}

func TestCacheConfigErrors(t *testing.T) {
	for _, cfg := range []CacheConfig{{Grace: -1}, {MaxEntries: -1}, {MaxChain: 99}} {
		if _, err := NewCache(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
