package dpi

import (
	"bytes"
	"testing"
	"time"
)

// benchFlow is one capture flow's payloads up to where the engine is done.
type benchFlow struct {
	proto   uint8
	samples []sample
}

func benchInput(b *testing.B) ([]benchFlow, int64) {
	flows := loadCaptures(b)
	var out []benchFlow
	var total int64
	var f Flow
	for _, lf := range flows {
		bf := benchFlow{proto: lf.flow.Proto}
		f.Reset(lf.flow.Proto)
		for _, s := range lf.samples {
			bf.samples = append(bf.samples, s)
			total += int64(len(s.payload))
			if _, done := f.Feed(s.dir, s.payload); done {
				break
			}
		}
		out = append(out, bf)
	}
	return out, total
}

// BenchmarkFeed is the engine's speed on the captures: every flow's
// payloads fed until it is done, on one core. It reports the time against
// a baseline over the same bytes in the same run (copy and scan for a
// newline) as dpi/baseline.
func BenchmarkFeed(b *testing.B) {
	flows, total := benchInput(b)
	f := new(Flow)
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := range flows {
			f.Reset(flows[j].proto)
			for _, s := range flows[j].samples {
				f.Feed(s.dir, s.payload)
			}
		}
	}
	engine := time.Since(start)
	b.StopTimer()
	start = time.Now()
	sink := baseline(flows, b.N)
	base := time.Since(start)
	if sink == -1 {
		b.Log(sink)
	}
	b.ReportMetric(float64(engine)/float64(base), "dpi/baseline")
}

// BenchmarkFeedBaseline is the baseline alone: the same bytes copied
// into a buffer and scanned with bytes.IndexByte.
func BenchmarkFeedBaseline(b *testing.B) {
	flows, total := benchInput(b)
	b.SetBytes(total)
	b.ResetTimer()
	if baseline(flows, b.N) == -1 {
		b.Log("never")
	}
}

var baselineBuf [MaxBuffer]byte

func baseline(flows []benchFlow, n int) int {
	sink := 0
	for i := 0; i < n; i++ {
		for j := range flows {
			for _, s := range flows[j].samples {
				c := copy(baselineBuf[:], s.payload)
				sink += bytes.IndexByte(baselineBuf[:c], '\n')
			}
		}
	}
	return sink
}
