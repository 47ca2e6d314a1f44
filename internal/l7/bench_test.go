package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// The L7 benchmarks, run as root with
//
//	go test -run XXX -bench . ./internal/l7
//
// measure one host's forward path between two workloads with the queue
// reader (DPI) deciding an "allow APP_HTTP" L7 rule, against the same rule
// without its profile (decided in the kernel at the first packet), in
// alternating rounds. Every connection sends one small HTTP request, so
// that it has payload to classify.

const (
	benchConnPort   = 7101
	benchStreamPort = 7102
	benchRequest    = "GET / HTTP/1.1\r\nHost: s\r\n\r\n"
)

func benchState(l *l7Lab, profile int) *nft.HostState {
	st := *l.state
	allow := nft.Verdict{Rule: 30, Action: nft.Allow}
	st.Profiles = []nft.Profile{{Apps: []nft.AppMatch{{Name: "APP_HTTP"}}}}
	st.Workloads = []nft.Workload{
		{Name: "c", Interface: l.client.Interface},
		{Name: "s", Interface: l.server.Interface, Ingress: []nft.Entry{
			{Peer: 1, Proto: nft.ProtoTCP, Ports: nft.Ports(benchConnPort, benchStreamPort), Verdict: allow, Profile: profile},
		}},
	}
	return &st
}

// requestLoop opens connections from workers clients until ctx is done:
// connect, send the request, read the greeting, close with a reset.
func requestLoop(ctx context.Context, w *netlab.Workload, dst netip.AddrPort, workers int) (ok, failed int64) {
	var nOK, nFail atomic.Int64
	var wg sync.WaitGroup
	tv := unix.NsecToTimeval(time.Second.Nanoseconds())
	for range workers {
		wg.Go(func() {
			w.NS.Do(func() error {
				sa := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
				var b [1]byte
				for ctx.Err() == nil {
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						return err
					}
					unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
					unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
					unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
					err = unix.Connect(fd, sa)
					if err == nil {
						_, err = unix.Write(fd, []byte(benchRequest))
					}
					if err == nil {
						var n int
						if n, err = unix.Read(fd, b[:]); err == nil && n != 1 {
							err = io.ErrUnexpectedEOF
						}
					}
					unix.Close(fd)
					if err != nil {
						nFail.Add(1)
						continue
					}
					nOK.Add(1)
				}
				return nil
			})
		})
	}
	wg.Wait()
	return nOK.Load(), nFail.Load()
}

// stream sends the request, then as much as it can for d; bytes per second.
func stream(b *testing.B, w *netlab.Workload, dst netip.AddrPort, d time.Duration) float64 {
	c, err := w.Dial("tcp", dst, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(benchRequest)); err != nil {
		b.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the verdict, before the bulk
	buf := make([]byte, 256<<10)
	var n int64
	start := time.Now()
	c.SetWriteDeadline(start.Add(d))
	for time.Since(start) < d {
		k, err := c.Write(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// serveRequests answers each connection's request with one byte and
// closes it, on threads blocking threads in the workload.
func serveRequests(b *testing.B, w *netlab.Workload, port uint16, threads int) {
	var fd int
	err := w.NS.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port)}); err != nil {
			return err
		}
		return unix.Listen(fd, 4096)
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Shutdown(fd, unix.SHUT_RDWR); unix.Close(fd) })
	for range threads {
		go func() {
			var buf [512]byte
			for {
				c, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
				if err != nil {
					if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
						continue
					}
					return
				}
				if n, err := unix.Read(c, buf[:]); err == nil && n > 0 {
					unix.Write(c, []byte{'x'})
				}
				unix.Close(c)
			}
		}()
	}
}

func medianOf(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

func BenchmarkL7(b *testing.B) {
	l := newL7Lab(b)
	serveRequests(b, l.server, benchConnPort, 2)
	if err := l.server.Sink(benchStreamPort); err != nil {
		b.Fatal(err)
	}
	// As the agent runs it: one queue per CPU, fanned out by the kernel.
	queues := min(runtime.NumCPU(), 64)
	table, err := nft.New(nft.Config{NetNS: l.host.NS.Fd(), L7Queues: uint16(queues)})
	if err != nil {
		b.Fatal(err)
	}
	l.table = table
	r, _ := l.startReaderQueues(b, queues)
	apply := func(profile int) {
		st := benchState(l, profile)
		l.state.Revision++
		st.Revision = l.state.Revision
		if _, err := l.table.Apply(st); err != nil {
			b.Fatal(err)
		}
		if err := r.SetState(st); err != nil {
			b.Fatal(err)
		}
		l.flush(b)
	}
	const d = 2 * time.Second
	var connRatios, streamRatios, l7Rates []float64
	for range 3 {
		var rates [2]float64
		for i, profile := range []int{0, 1} {
			apply(profile)
			ctx, cancel := context.WithTimeout(context.Background(), d)
			start := time.Now()
			ok, failed := requestLoop(ctx, l.client, netip.AddrPortFrom(l.server.IPv4, benchConnPort), 4)
			cancel()
			if failed > ok/100 {
				b.Fatalf("profile %d: %d of %d connections failed (reader %+v)", profile, failed, ok+failed, r.Stats())
			}
			rates[i] = float64(ok) / time.Since(start).Seconds()
		}
		connRatios = append(connRatios, rates[1]/rates[0])
		l7Rates = append(l7Rates, rates[1])
		var tput [2]float64
		for i, profile := range []int{0, 1} {
			apply(profile)
			tput[i] = stream(b, l.client, netip.AddrPortFrom(l.server.IPv4, benchStreamPort), d)
		}
		streamRatios = append(streamRatios, tput[1]/tput[0])
	}
	b.ReportMetric(medianOf(l7Rates), "L7-conn/s")
	b.ReportMetric(medianOf(connRatios), "conn-ratio")
	b.ReportMetric(medianOf(streamRatios), "stream-ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("new connections with L7 vs the same without: %.3f (rounds %.3f); long flow after its verdict vs uninspected: %.3f (rounds %.3f); reader %s",
		medianOf(connRatios), connRatios, medianOf(streamRatios), streamRatios, fmt.Sprintf("%+v", r.Stats()))
}
