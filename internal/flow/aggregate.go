package flow

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// dropKey is what makes two dropped packets the same drop record: the
// 5-tuple without the source port, so that the retries and new source
// ports of one blocked client, or of a scanner hitting one port, count
// into one record.
type dropKey struct {
	src, dst           netip.Addr
	proto              uint8
	dstPort            uint16
	icmpType, icmpCode uint8
	rule               uint32
	verdict            Verdict
}

type dropCount struct {
	first, last     int64 // Unix ns
	packets, bytes  uint64
	srcPort         uint16
	severalSrcPorts bool
}

// Aggregator folds dropped packets into drop records, one per key and
// window. Add allocates nothing once a key is in the window.
type Aggregator struct {
	host     string
	maxKeys  int
	workload func(netip.Addr) string
	out      *Buffer

	mu     sync.Mutex
	counts map[dropKey]dropCount
	window int64 // Unix ns of the window's first packet, for IDs
	seq    uint64
	// early counts windows closed because maxKeys was reached.
	early uint64
}

// NewAggregator returns an aggregator that pushes its records to out.
// maxKeys bounds the distinct keys of one window; reaching it closes the
// window early rather than growing. workload names local addresses and may
// be nil.
func NewAggregator(host string, maxKeys int, workload func(netip.Addr) string, out *Buffer) *Aggregator {
	if maxKeys <= 0 {
		maxKeys = DefaultDropKeys
	}
	return &Aggregator{host: host, maxKeys: maxKeys, workload: workload, out: out, counts: make(map[dropKey]dropCount, maxKeys)}
}

// Add counts one dropped packet decided by rule with verdict v.
func (a *Aggregator) Add(p *Packet, rule uint32, v Verdict, now time.Time) {
	k := dropKey{src: p.Src, dst: p.Dst, proto: p.Proto, dstPort: p.DstPort, icmpType: p.ICMPType, icmpCode: p.ICMPCode, rule: rule, verdict: v}
	ns := now.UnixNano()
	a.mu.Lock()
	c, ok := a.counts[k]
	if !ok {
		if len(a.counts) >= a.maxKeys {
			a.early++
			a.flushLocked()
		}
		if len(a.counts) == 0 {
			a.window = ns
		}
		c = dropCount{first: ns, srcPort: p.SrcPort}
	} else if c.srcPort != p.SrcPort {
		c.severalSrcPorts = true
	}
	c.last = ns
	c.packets++
	c.bytes += uint64(p.Length)
	a.counts[k] = c
	a.mu.Unlock()
}

// Flush closes the window: every key becomes one drop record in the buffer.
func (a *Aggregator) Flush() {
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
}

func (a *Aggregator) flushLocked() {
	if len(a.counts) == 0 {
		return
	}
	recs := make([]Record, 0, len(a.counts))
	for k, c := range a.counts {
		a.seq++
		r := Record{
			ID:         fmt.Sprintf("%s/%016x/drop/%x", a.host, a.window, a.seq),
			Kind:       KindDrop,
			Host:       a.host,
			Src:        k.src,
			Dst:        k.dst,
			Proto:      k.proto,
			DstPort:    k.dstPort,
			ICMPType:   k.icmpType,
			ICMPCode:   k.icmpCode,
			SrcBytes:   c.bytes,
			SrcPackets: c.packets,
			Start:      time.Unix(0, c.first),
			End:        time.Unix(0, c.last),
			Seen:       time.Unix(0, c.last),
			RuleID:     k.rule,
			Verdict:    k.verdict,
		}
		if !c.severalSrcPorts {
			r.SrcPort = c.srcPort
		}
		if a.workload != nil {
			r.SrcWorkload, r.DstWorkload = a.workload(k.src), a.workload(k.dst)
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(x, y Record) int { return x.Start.Compare(y.Start) })
	// clear keeps the map's storage, so the next window's keys do not
	// allocate until it outgrows this one.
	clear(a.counts)
	a.out.Push(recs...)
}

// EarlyFlushes counts windows closed early because too many distinct keys
// arrived.
func (a *Aggregator) EarlyFlushes() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.early
}
