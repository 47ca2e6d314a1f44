package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead/bulkhead/internal/dnssnoop"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// fqdnRunner fills a state's FQDN sets while the state has FQDN entries:
// the capture table copies DNS answers forwarded in the namespace to an
// NFLOG group, the snooper parses them into the cache, and the writer puts
// the addresses of matching names into the data plane's sets (declared by
// nft with the table) with element timeouts of TTL plus grace.
type fqdnRunner struct {
	capture dnssnoop.CaptureConfig
	table   string
	log     *slog.Logger

	cache *dnssnoop.Cache
	snoop atomic.Pointer[dnssnoop.Snooper] // replaced after a failure
	sets  atomic.Pointer[dnssnoop.Sets]
	key   string // the patterns the current sets were made for

	stop     func() // the snooper and the counters' logger
	stopSets func() // the current sets' writer
}

// captureAfterFilter is the capture table's hook priority: after the data
// plane's forward chain (priority 0), which drops what the policy drops.
const captureAfterFilter = 10

// FQDNStats are the counters of the DNS snooping behind FQDN rules.
type FQDNStats struct {
	Snooper dnssnoop.SnooperStats
	Cache   dnssnoop.CacheStats
	Sets    dnssnoop.SetsStats
}

func (f *fqdnRunner) stats() FQDNStats {
	st := FQDNStats{Snooper: f.snoop.Load().Stats(), Cache: f.cache.Stats()}
	if s := f.sets.Load(); s != nil {
		st.Sets = s.Stats()
	}
	return st
}

// WithDNSCache sets the bounds and grace of the DNS cache behind FQDN
// rules (default: dnssnoop's).
func WithDNSCache(cfg dnssnoop.CacheConfig) Option {
	return func(e *NFT) { e.dnsCache = cfg }
}

func startFQDN(netns int, table string, cacheCfg dnssnoop.CacheConfig, log *slog.Logger) (*fqdnRunner, error) {
	// After the data plane's filter (priority 0), answers to the
	// workloads' own queries only: a workload sending "answers" from port
	// 53 cannot open FQDN rules to addresses of its choice.
	capture := dnssnoop.CaptureConfig{NetNS: netns, Priority: captureAfterFilter, RepliesOnly: true}
	f := &fqdnRunner{capture: capture, table: table, log: log}
	var err error
	if f.cache, err = dnssnoop.NewCache(cacheCfg); err != nil {
		return nil, err
	}
	snoop, err := f.newSnooper()
	if err != nil {
		return nil, err
	}
	f.snoop.Store(snoop)
	if err := dnssnoop.InstallCapture(f.capture); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.runSnooper(ctx) })
	wg.Go(func() { f.logStats(ctx) })
	f.stop = func() { cancel(); wg.Wait() }
	select {
	case <-snoop.Ready():
	case <-time.After(5 * time.Second):
		log.Warn("DNS snooper: not bound to its NFLOG group yet")
	}
	return f, nil
}

// setState makes the sets those of st. full says that the table was just
// recreated (its sets are empty): the cache is written again.
func (f *fqdnRunner) setState(st *nft.HostState, full bool) error {
	var key strings.Builder
	for _, s := range st.FQDNSets {
		key.WriteString(strings.Join(s.Patterns, ","))
		key.WriteByte(';')
	}
	if key.String() == f.key && f.sets.Load() != nil {
		if full {
			return f.sets.Load().Sync(time.Now())
		}
		return nil
	}
	groups := make([]dnssnoop.SetGroup, len(st.FQDNSets))
	for i, s := range st.FQDNSets {
		groups[i] = dnssnoop.SetGroup{Set4: nft.FQDNSetName(i+1, false), Set6: nft.FQDNSetName(i+1, true), FQDNs: s.Patterns}
	}
	sets, err := dnssnoop.NewSets(dnssnoop.SetsConfig{NetNS: f.capture.NetNS, Table: f.table, Groups: groups, Size: nft.FQDNSetSize}, f.cache)
	if err != nil {
		return err
	}
	if f.stopSets != nil {
		f.stopSets()
	}
	f.sets.Store(sets)
	f.key = key.String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { sets.Run(ctx) })
	f.stopSets = func() { cancel(); wg.Wait() }
	return sets.Sync(time.Now())
}

// close stops every goroutine; with uninstall it also removes the capture
// table.
func (f *fqdnRunner) close(uninstall bool) error {
	if f.stopSets != nil {
		f.stopSets()
	}
	f.stop()
	f.log.Info("DNS snooper stopped", "stats", fmt.Sprintf("%+v", f.stats()))
	if uninstall {
		return dnssnoop.RemoveCapture(f.capture)
	}
	return nil
}

func (f *fqdnRunner) newSnooper() (*dnssnoop.Snooper, error) {
	return dnssnoop.NewSnooper(dnssnoop.SnooperConfig{
		NetNS: f.capture.NetNS,
		Log:   f.log,
		OnChange: func(ips []netip.Addr) {
			if s := f.sets.Load(); s != nil {
				s.Notify(ips)
			}
		},
	}, f.cache)
}

// runSnooper runs the snooper until ctx is done, restarting it after a
// failure.
func (f *fqdnRunner) runSnooper(ctx context.Context) {
	wait := time.Second
	for ctx.Err() == nil {
		err := f.snoop.Load().Run(ctx)
		if ctx.Err() != nil {
			return
		}
		f.log.Error("DNS snooper failed; restarting", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
		// A snooper runs once: a fresh one, on the same cache.
		if s, err := f.newSnooper(); err == nil {
			f.snoop.Store(s)
		}
	}
}

// logStats logs the counters every minute when they moved.
func (f *fqdnRunner) logStats(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var last FQDNStats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s := f.stats(); s != last {
				f.log.Info("DNS snooper", "stats", fmt.Sprintf("%+v", s))
				last = s
			}
		}
	}
}
