package stream

import (
	"math/rand/v2"
	"testing"
)

// The benchmarks push a 64 KiB stream through a fresh Conn per iteration;
// BenchmarkCopy is the baseline (the same bytes copied once, as any reader
// would), so "ratio = Copy ns/op / Segment ns/op" is comparable across
// machines.

const benchBytes = 64 << 10

func benchSegs(size int, shuffle bool) []seg {
	segs := split(ToServer, 1, payload(benchBytes), size)
	if shuffle {
		r := rand.New(rand.NewPCG(3, 4))
		// Shuffle within windows of 16 segments: reordering as a network
		// does it, not across the whole stream.
		for i := 0; i < len(segs); i += 16 {
			w := segs[i:min(i+16, len(segs))]
			r.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
		}
	}
	return segs
}

func benchRun(b *testing.B, segs []seg) {
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	var c Conn
	n := 0
	deliver := func(_ Dir, _ uint64, d []byte) { n += len(d) }
	for b.Loop() {
		c.Reset(Config{})
		c.Segment(ToServer, 1, FlagSYN, nil, deliver)
		for _, s := range segs {
			c.Segment(s.dir, s.seq, s.flags, s.payload, deliver)
		}
	}
	b.ReportMetric(float64(len(segs))*float64(b.N)/b.Elapsed().Seconds(), "segments/s")
}

func BenchmarkCopy(b *testing.B) {
	segs := benchSegs(1460, false)
	dst := make([]byte, benchBytes)
	b.SetBytes(benchBytes)
	for b.Loop() {
		o := 0
		for _, s := range segs {
			o += copy(dst[o:], s.payload)
		}
	}
}

func BenchmarkSegmentInOrder(b *testing.B)      { benchRun(b, benchSegs(1460, false)) }
func BenchmarkSegmentShuffled(b *testing.B)     { benchRun(b, benchSegs(1460, true)) }
func BenchmarkSegmentTinyShuffled(b *testing.B) { benchRun(b, benchSegs(8, true)) }
