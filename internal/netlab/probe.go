package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Sockets for probes are created inside the workload's namespace by Do (on a
// thread locked into the namespace for the duration of the call) and then
// used from ordinary goroutines: a socket stays in the namespace it was
// created in, whatever thread later reads or writes it.

// Outcome is what a client observed when it tried to reach a peer.
type Outcome int

const (
	// Open: the connection was made and the server answered.
	Open Outcome = iota
	// Refused: a TCP RST or an ICMP port unreachable came back (ECONNREFUSED).
	Refused
	// Unreachable: an ICMP destination unreachable other than port unreachable
	// came back, e.g. administratively prohibited (EHOSTUNREACH, EACCES).
	Unreachable
	// Timeout: nothing came back in time, as when a firewall drops silently.
	Timeout
)

func (o Outcome) String() string {
	switch o {
	case Open:
		return "open"
	case Refused:
		return "refused"
	case Unreachable:
		return "unreachable"
	case Timeout:
		return "timeout"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Classify maps a socket error to an Outcome; errors that say nothing about
// the network (a bad address, a closed socket) are returned as errors.
func Classify(err error) (Outcome, error) {
	switch {
	case err == nil:
		return Open, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, nil
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return Unreachable, nil
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ETIMEDOUT):
		return Timeout, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout, nil
	}
	return Timeout, err
}

// Greeting is the byte a TCP probe server sends first on every connection, so
// a client knows the whole path works both ways before it sends anything.
const Greeting = 'B'

// Server answers probes on one port of a workload: TCP (greeting, then echo)
// and UDP (echo), on both IPv4 and IPv6.
type Server struct {
	Port uint16

	tcp  net.Listener
	udp  net.PacketConn
	mu   sync.Mutex
	live map[net.Conn]struct{}
	wg   sync.WaitGroup
}

// Serve starts a probe server on port in the workload. The topology closes
// it; Close may also be called earlier.
func (w *Workload) Serve(port uint16) (*Server, error) {
	s := &Server{Port: port, live: map[net.Conn]struct{}{}}
	addr := fmt.Sprintf(":%d", port) // dual-stack: v4-mapped v6 socket
	err := w.NS.Do(func() error {
		var err error
		if s.tcp, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		if s.udp, err = net.ListenPacket("udp", addr); err != nil {
			s.tcp.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: serve port %d: %w", w.Name, port, err)
	}
	s.wg.Add(2)
	go s.acceptLoop()
	go s.udpLoop()
	w.Host.topo.onClose(s.Close)
	return s, nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNABORTED: keep serving
		}
		s.mu.Lock()
		if s.live == nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.live[c] = struct{}{}
		s.mu.Unlock()
		go s.echo(c)
	}
}

func (s *Server) echo(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.live, c)
		s.mu.Unlock()
	}()
	if _, err := c.Write([]byte{Greeting}); err != nil {
		return
	}
	io.Copy(c, c)
}

func (s *Server) udpLoop() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.udp.WriteTo(buf[:n], from)
	}
}

// Close stops the server and resets its open connections.
func (s *Server) Close() error {
	s.mu.Lock()
	live := s.live
	s.live = nil
	s.mu.Unlock()
	if live == nil {
		return nil
	}
	err := errors.Join(s.tcp.Close(), s.udp.Close())
	for c := range live {
		c.Close()
	}
	s.wg.Wait()
	return err
}

// Sink accepts TCP connections on a port and discards what they send; the
// other end of a throughput test.
func (w *Workload) Sink(port uint16) error {
	var ln net.Listener
	err := w.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: sink port %d: %w", w.Name, port, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	w.Host.topo.onClose(func() error {
		err := ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		return err
	})
	return nil
}

// Dial opens a connection ("tcp" or "udp") from the workload to dst. The
// socket is made inside the workload's namespace; the returned conn can be
// used from any goroutine.
func (w *Workload) Dial(network string, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := w.NS.Do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: timeout}).Dial(network, dst.String())
		return err
	})
	return c, err
}

// ProbeTCP connects to a probe server at dst and waits for its greeting.
func (w *Workload) ProbeTCP(dst netip.AddrPort, timeout time.Duration) (Outcome, error) {
	deadline := time.Now().Add(timeout)
	c, err := w.Dial("tcp", dst, timeout)
	if err != nil {
		return Classify(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return Classify(err)
	}
	if b[0] != Greeting {
		return Timeout, fmt.Errorf("netlab: %s: tcp %s: unexpected greeting %q", w.Name, dst, b[0])
	}
	return Open, nil
}

// ProbeUDP sends one datagram to a probe server at dst and waits for the echo.
func (w *Workload) ProbeUDP(dst netip.AddrPort, timeout time.Duration) (Outcome, error) {
	c, err := w.Dial("udp", dst, timeout)
	if err != nil {
		return Classify(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("bulkhead-probe")
	if _, err := c.Write(msg); err != nil {
		return Classify(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return Classify(err)
	}
	if string(buf[:n]) != string(msg) {
		return Timeout, fmt.Errorf("netlab: %s: udp %s: unexpected echo %q", w.Name, dst, buf[:n])
	}
	return Open, nil
}

// ProbeICMP sends one ICMP (or ICMPv6) echo request to dst and waits for the
// reply. It uses a kernel "ping" socket (SOCK_DGRAM, IPPROTO_ICMP): the
// kernel fills in the identifier and checksum and, the socket being
// connected, reports ICMP errors about our request as errors on read. (Ping
// sockets send echo requests with code 0 only.)
func (w *Workload) ProbeICMP(dst netip.Addr, timeout time.Duration) (Outcome, error) {
	family, proto, reqType, replyType := unix.AF_INET6, unix.IPPROTO_ICMPV6, byte(128), byte(129)
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: dst.As16()}
	if dst.Is4() {
		family, proto, reqType, replyType = unix.AF_INET, unix.IPPROTO_ICMP, 8, 0
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	fd := -1
	err := w.NS.Do(func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		return unix.Connect(fd, sa)
	})
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if err != nil {
		return Timeout, fmt.Errorf("netlab: %s: icmp socket to %s: %w", w.Name, dst, err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return Timeout, err
	}
	req := []byte{reqType, 0, 0, 0, 0, 0, 0, 1, 'b', 'u', 'l', 'k', 'h', 'e', 'a', 'd'}
	if _, err := unix.Write(fd, req); err != nil {
		return Classify(err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return Classify(err)
		}
		if n >= 8 && buf[0] == replyType {
			return Open, nil
		}
	}
	return Timeout, nil
}

// ConnStats counts the outcome of a connection loop.
type ConnStats struct {
	OK     int64
	Failed int64
}

// ConnectLoop opens and closes TCP connections to a probe server at dst from
// workers parallel clients until ctx is done. Each connection waits for the
// greeting (so it really crossed the path both ways) and is then closed with
// a reset, so no TIME_WAIT state piles up on either side.
func (w *Workload) ConnectLoop(ctx context.Context, dst netip.AddrPort, workers int, timeout time.Duration) (ConnStats, error) {
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	family := unix.AF_INET6
	if dst.Addr().Is4() {
		family = unix.AF_INET
	}
	// A Sockaddr is scratch space for the syscall: one per worker.
	sockaddr := func() unix.Sockaddr {
		if dst.Addr().Is4() {
			return &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
		}
		return &unix.SockaddrInet6{Addr: dst.Addr().As16(), Port: int(dst.Port())}
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The whole loop runs on one thread inside the namespace, with
			// blocking syscalls: a load generator should cost as little as
			// possible per connection, and a blocked thread per worker is fine.
			sa := sockaddr()
			errc <- w.NS.Do(func() error {
				var b [1]byte
				for ctx.Err() == nil {
					fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						return err
					}
					unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
					unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
					unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
					err = unix.Connect(fd, sa)
					if err == nil {
						var n int
						n, err = unix.Read(fd, b[:])
						if err == nil && n != 1 {
							err = io.ErrUnexpectedEOF
						}
					}
					unix.Close(fd)
					if err != nil {
						failed.Add(1)
						continue
					}
					ok.Add(1)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	close(errc)
	var errs error
	for err := range errc {
		errs = errors.Join(errs, err)
	}
	return ConnStats{OK: ok.Load(), Failed: failed.Load()}, errs
}

// Stream sends as much as it can over one TCP connection to a Sink at dst for
// d and returns the bytes written.
func (w *Workload) Stream(dst netip.AddrPort, d time.Duration) (int64, error) {
	c, err := w.Dial("tcp", dst, 2*time.Second)
	if err != nil {
		return 0, fmt.Errorf("netlab: %s: stream to %s: %w", w.Name, dst, err)
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	var total int64
	end := time.Now().Add(d)
	c.SetWriteDeadline(end)
	for time.Now().Before(end) {
		n, err := c.Write(buf)
		total += int64(n)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return total, fmt.Errorf("netlab: %s: stream to %s: %w", w.Name, dst, err)
		}
	}
	return total, nil
}

// ServeGreeter is a minimal server for connection-rate tests: threads
// blocking accept loops on a dual-stack port, each accepted connection gets
// the Greeting and is closed at once. It costs far less per connection than
// Serve, so that the path under test, not the server, sets the rate.
func (w *Workload) ServeGreeter(port uint16, threads int) error {
	var fd int
	err := w.NS.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		for _, o := range [][2]int{{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}} {
			v := 1
			if o[1] == unix.IPV6_V6ONLY {
				v = 0
			}
			if err := unix.SetsockoptInt(fd, o[0], o[1], v); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Port: int(port)}); err != nil {
			return err
		}
		return unix.Listen(fd, 4096)
	})
	if err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return fmt.Errorf("netlab: %s: greeter on port %d: %w", w.Name, port, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			greet := []byte{Greeting}
			for {
				c, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
				if err != nil {
					if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
						continue
					}
					return // shut down
				}
				unix.Write(c, greet)
				unix.Close(c)
			}
		}()
	}
	w.Host.topo.onClose(func() error {
		unix.Shutdown(fd, unix.SHUT_RDWR) // wakes the blocked accepts
		wg.Wait()
		return unix.Close(fd)
	})
	return nil
}
