package ipfix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// Collector receives IPFIX and NetFlow v9 datagrams on one UDP socket and
// hands each datagram's records to a sink.
type Collector struct {
	// Listen is the UDP address to listen on, e.g. ":4739" (--ipfix-listen).
	Listen string
	// Host starts every record's Host, as in Host + "/" + exporter
	// address; empty means "ipfix". A "/" never appears in an agent's
	// host name, so imported flows never share IDs with an agent's.
	Host string

	dec Decoder
}

// Stats returns the collector's counters.
func (c *Collector) Stats() Stats { return c.dec.Stats() }

// Run listens on c.Listen and serves until ctx is done (returning nil) or
// the sink fails (returning its error).
func (c *Collector) Run(ctx context.Context, sink func([]flow.Record) error) error {
	conn, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", c.Listen)
	if err != nil {
		return fmt.Errorf("ipfix: listen %s: %w", c.Listen, err)
	}
	return c.Serve(ctx, conn, sink)
}

// Serve is Run on a socket the caller opened; it closes conn when it
// returns. The sink is called once per datagram that produced records, from
// one goroutine, and must not keep the slice.
func (c *Collector) Serve(ctx context.Context, conn net.PacketConn, sink func([]flow.Record) error) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c.dec.Prefix = c.Host

	buf := make([]byte, 65535)
	var recs []flow.Record
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("ipfix: read %s: %w", conn.LocalAddr(), err)
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		exporter := ua.AddrPort()
		if !exporter.IsValid() {
			exporter = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		// Malformed datagrams are counted in Stats; their good records
		// still go to the sink.
		recs, _ = c.dec.Decode(recs[:0], exporter, buf[:n], time.Now())
		if len(recs) == 0 {
			continue
		}
		if err := sink(recs); err != nil {
			return fmt.Errorf("ipfix: sink: %w", err)
		}
	}
}
