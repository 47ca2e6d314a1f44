package ids

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/dpi"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// benchPacket is one packet of the benchmark traffic.
type benchPacket struct {
	ts  time.Time
	pkt []byte
}

var (
	trafficOnce sync.Once
	traffic     []benchPacket
	trafficSize int64

	et40kOnce sync.Once
	et40k     []*rules.Rule
)

// benchTraffic is the recorded lab captures (testdata/captures: HTTP,
// TLS, DNS, SSH, binary protocols, segmented and reordered requests) and,
// for volume, generated HTTP exchanges with 64 KiB responses and a bulk
// TCP transfer of 1 MiB in 1448-byte segments.
func benchTraffic(b *testing.B) ([]benchPacket, int64) {
	trafficOnce.Do(func() {
		add := func(ts time.Time, p []byte) {
			traffic = append(traffic, benchPacket{ts, p})
			trafficSize += int64(len(p))
		}
		caps, _ := filepath.Glob(filepath.Join("testdata", "captures", "*.pcap*"))
		for _, c := range caps {
			data, err := os.ReadFile(c)
			if err != nil {
				b.Fatal(err)
			}
			pr, err := dpi.NewPacketReader(bytes.NewReader(data))
			if err != nil {
				b.Fatalf("%s: %v", c, err)
			}
			for {
				p, ts, err := pr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatalf("%s: %v", c, err)
				}
				add(ts, append([]byte(nil), p...))
			}
		}
		ts := t0
		body := []byte(strings.Repeat("<div class=\"product\"><a href=\"/item?id=42\">Blue shirt</a> 19.99 EUR</div>\n", 900))[:64<<10]
		for n := 0; n < 8; n++ {
			k := newConn(b, uint16(45000+n), 80)
			for _, p := range k.handshake() {
				add(ts, p)
			}
			req := fmt.Sprintf("GET /shop/item?id=%d HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n", n)
			add(ts, k.toServer(0, []byte(req)))
			head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n", len(body))
			resp := append([]byte(head), body...)
			for off := 0; off < len(resp); off += 1448 {
				add(ts, k.toClient(off, resp[off:min(off+1448, len(resp))]))
			}
		}
		k := newConn(b, 46000, 5432)
		for _, p := range k.handshake() {
			add(ts, p)
		}
		bulk := bytes.Repeat([]byte("INSERT INTO orders VALUES (42, 'blue shirt', 19.99, now());\n"), 1<<20/60)
		for off := 0; off < len(bulk); off += 1448 {
			add(ts, k.toServer(off, bulk[off:min(off+1448, len(bulk))]))
		}
	})
	return traffic, trafficSize
}

// etRules40k is ET Open with its commented-out rules, topped up to 40,000.
func etRules40k(b *testing.B) []*rules.Rule {
	et40kOnce.Do(func() { et40k = etRules(b, true, 40000) })
	if et40k == nil {
		b.Skip("ET Open rules not available")
	}
	return et40k
}

// inspectAll runs the traffic through a fresh inspector.
func inspectAll(pkts []benchPacket, e *Engine) (alerts int) {
	insp := NewInspector(InspectorConfig{OnAlert: func(*Alert) { alerts++ }})
	var last time.Time
	for _, p := range pkts {
		insp.Packet(p.ts, p.pkt, e, false)
		last = p.ts
	}
	insp.CloseAll(last, e)
	return alerts
}

// BenchmarkInspect measures bytes/s per core (one goroutine) of the
// benchmark traffic with 1k ET rules, ET Open's enabled rules and 40k
// (ET Open with its disabled rules, topped up), each against the
// baseline of the same traffic with no rules (decoding, flow table,
// reassembly, app layer). The two are measured in alternation and in
// process CPU time, so that a loaded machine skews neither the ratio nor
// the rates much.
func BenchmarkInspect(b *testing.B) {
	pkts, size := benchTraffic(b)
	empty, _ := Compile(nil)
	run := func(b *testing.B, e *Engine) {
		b.SetBytes(size)
		b.ReportAllocs()
		var base, with time.Duration
		alerts := 0
		b.ResetTimer()
		for n := 0; n < b.N; n++ {
			for r := 0; r < 3; r++ {
				c0 := cpuTime()
				inspectAll(pkts, empty)
				c1 := cpuTime()
				alerts = inspectAll(pkts, e)
				c2 := cpuTime()
				base += c1 - c0
				with += c2 - c1
			}
		}
		bytes := float64(size) * 3 * float64(b.N)
		b.ReportMetric(bytes/with.Seconds()/1e6, "MB/s-cpu")
		b.ReportMetric(bytes/base.Seconds()/1e6, "baseline-MB/s-cpu")
		b.ReportMetric(base.Seconds()/with.Seconds(), "x-baseline")
		b.ReportMetric(float64(alerts), "alerts")
	}
	b.Run("rules=1k", func(b *testing.B) {
		e, _ := Compile(etRules40k(b)[:1000])
		run(b, e)
	})
	// ET Open as shipped (its enabled rules): the expensive rules ET
	// comments out are in the 40k set.
	b.Run("rules=et-enabled", func(b *testing.B) {
		e, _ := Compile(etRules(b, false, 0))
		run(b, e)
	})
	b.Run("rules=40k", func(b *testing.B) {
		e, _ := Compile(etRules40k(b))
		run(b, e)
	})
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCompile40k measures compiling 40k parsed rules (the parse is
// helper rules' BenchmarkLoad40k).
func BenchmarkCompile40k(b *testing.B) {
	rs := etRules40k(b)
	b.ResetTimer()
	var e *Engine
	for n := 0; n < b.N; n++ {
		e, _ = Compile(rs)
	}
	b.ReportMetric(float64(e.Stats().Rules), "rules")
	b.ReportMetric(float64(len(rs))*float64(b.N)/b.Elapsed().Seconds(), "rules/s")
}
