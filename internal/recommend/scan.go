package recommend

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// A recommendation allows what was seen; it must not allow an intruder's
// reconnaissance. A source that tried many destinations and ports that
// never answered (a connect scan, a sweep) is a scanner: its connections,
// the ones that succeeded too, are left out of the draft and reported, so
// that an operator decides about them instead of a rule quietly allowing
// them.

// DefaultScanThreshold is how many distinct unanswered (destination, port)
// targets make a source a scanner.
const DefaultScanThreshold = 20

// maxScanTargets bounds the targets remembered per source: past it a
// source is a scanner whatever the threshold, and its count saturates.
const maxScanTargets = 4096

// Scanner is a source left out of a recommendation, with its evidence.
type Scanner struct {
	Addr netip.Addr
	// Failed counts the distinct (destination, protocol, port) targets
	// that did not answer (saturates at 4096); Targets and Ports how many
	// distinct destinations and ports they spread over.
	Failed, Targets, Ports int
	// Connections counts every connection of the source in the window,
	// answered or not.
	Connections uint64
	First, Last time.Time
	// Examples are up to three unanswered attempts, smallest first.
	Examples []Example
}

// ScanDetector finds scanners in a stream of flow records.
type ScanDetector struct {
	threshold int
	src       map[netip.Addr]*scanState
}

type scanTarget struct {
	dst   netip.Addr
	proto uint8
	port  uint16
}

type scanState struct {
	failed      map[scanTarget]struct{}
	connections uint64
	first, last time.Time
}

// NewScanDetector returns a detector that calls a source a scanner once it
// has threshold distinct unanswered targets; threshold <= 0 takes
// DefaultScanThreshold.
func NewScanDetector(threshold int) *ScanDetector {
	if threshold <= 0 {
		threshold = DefaultScanThreshold
	}
	return &ScanDetector{threshold: min(threshold, maxScanTargets), src: map[netip.Addr]*scanState{}}
}

// Add looks at one record; rec is not kept.
func (d *ScanDetector) Add(rec *flow.Record) {
	if !rec.Src.IsValid() {
		return
	}
	st := d.src[rec.Src]
	if st == nil {
		st = &scanState{}
		d.src[rec.Src] = st
	}
	st.connections++
	if !rec.Unanswered() {
		return
	}
	if st.failed == nil {
		st.failed = map[scanTarget]struct{}{}
	}
	if len(st.failed) < maxScanTargets {
		port := rec.DstPort
		if rec.IsICMP() {
			port = uint16(rec.ICMPType)
		}
		st.failed[scanTarget{rec.Dst, rec.Proto, port}] = struct{}{}
	}
	if st.first.IsZero() || rec.Start.Before(st.first) {
		st.first = rec.Start
	}
	last := rec.Seen
	if rec.End.After(last) {
		last = rec.End
	}
	if last.After(st.last) {
		st.last = last
	}
}

// Scanners returns the sources that reached the threshold, most failed
// targets first.
func (d *ScanDetector) Scanners() []Scanner {
	var out []Scanner
	for a, st := range d.src {
		if len(st.failed) < d.threshold {
			continue
		}
		dsts, prts := map[netip.Addr]bool{}, map[uint16]bool{}
		var xs []Example
		for t := range st.failed {
			dsts[t.dst], prts[t.port] = true, true
			xs = append(xs, Example{Proto: t.proto, Src: a, Dst: t.dst, DstPort: t.port})
		}
		slices.SortFunc(xs, func(x, y Example) int {
			return cmp.Or(x.Dst.Compare(y.Dst), cmp.Compare(x.Proto, y.Proto), cmp.Compare(x.DstPort, y.DstPort))
		})
		out = append(out, Scanner{Addr: a, Failed: len(st.failed), Targets: len(dsts), Ports: len(prts),
			Connections: st.connections, First: st.first, Last: st.last, Examples: xs[:min(3, len(xs))]})
	}
	slices.SortFunc(out, func(x, y Scanner) int { return cmp.Or(cmp.Compare(y.Failed, x.Failed), x.Addr.Compare(y.Addr)) })
	return out
}
