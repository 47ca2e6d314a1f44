package manager

// Flow records from outside Bulkhead: the IPFIX / NetFlow v9 collector
// (--ipfix-listen) and file imports (Zeek conn.log). Both end in
// storeFlows, the path agent flows take.
//
// What an imported record says about policy: nothing our data plane
// decided, so it is stored as observed — rule 0, verdict allow (the
// connection happened), like a flow between addresses that are not
// workloads. Naming its ends from the inventory and its staged rule (what
// the latest revision's staged rules would decide) work as for agent
// flows. Its host is "ipfix/<exporter address>" or "zeek/<sensor>": a "/"
// never appears in an agent's host name, so imported records can never
// overwrite an agent's.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/controlplane"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/ipfix"
	"github.com/bulkhead/bulkhead/internal/zeek"
)

const (
	// importBatch records of a file are stored per transaction.
	importBatch = 5000
	// The collector stores what it decoded every collectorFlushEvery, or
	// as soon as collectorBatch records wait.
	collectorBatch      = 2000
	collectorFlushEvery = 500 * time.Millisecond
	// collectorQueue datagrams' records wait for the writer; beyond, the
	// reader blocks and the socket's buffer (then the kernel) absorbs or
	// drops datagrams.
	collectorQueue = 256
	// defaultSensor names a Zeek import that gives no host.
	defaultSensor = "default"
)

// flowImportRoutes: flow records from outside Bulkhead (issue 5).
func (s *Server) flowImportRoutes() []route {
	return []route{
		{method: "POST", path: api.Prefix + "/flows/import", role: api.RoleOperator,
			summary: "Import flow records from the file in the body, streamed and stored in batches (?format=zeek&host=SENSOR)",
			reply:   api.FlowImportResult{}, handle: s.handleFlowImport},
	}
}

func (s *Server) handleFlowImport(w http.ResponseWriter, r *http.Request) error {
	if s.flows == nil {
		return httpError(http.StatusServiceUnavailable, errors.New("flow store not open"))
	}
	q := r.URL.Query()
	if f := q.Get(api.FlowImportFormat); f != api.FlowFormatZeek {
		return httpError(http.StatusBadRequest, fmt.Errorf("%s %q: want %s", api.FlowImportFormat, f, api.FlowFormatZeek))
	}
	sensor := q.Get(api.FlowImportHost)
	if sensor == "" {
		sensor = defaultSensor
	}
	if why := controlplane.ValidHostName(sensor); why != "" {
		return httpError(http.StatusBadRequest, fmt.Errorf("%s: %s", api.FlowImportHost, why))
	}
	host := "zeek/" + sensor
	ctx := r.Context()
	var (
		batch    = make([]flow.Record, 0, importBatch)
		stored   int
		storeErr error
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.storeFlows(ctx, s.flows, host, batch); err != nil {
			storeErr = err
			return err
		}
		stored += len(batch)
		batch = batch[:0]
		return nil
	}
	res, err := zeek.Parse(r.Body, host, func(rec flow.Record) error {
		batch = append(batch, rec)
		if len(batch) == importBatch {
			return flush()
		}
		return nil
	})
	// The lines read before a read error are good: store them too.
	if storeErr == nil {
		if ferr := flush(); ferr != nil {
			err = ferr
		}
	}
	if err != nil {
		// Records merge by connection, so sending the whole file again
		// is the way to finish.
		err = fmt.Errorf("import %s: stored %d records before: %w; importing the file again is safe", host, stored, err)
		if storeErr != nil {
			return err
		}
		return httpError(http.StatusBadRequest, err)
	}
	out := api.FlowImportResult{Format: api.FlowFormatZeek, Host: host, Records: stored, Skipped: res.Bad}
	for _, le := range res.Errors {
		out.Errors = append(out.Errors, api.FlowImportLineError{Line: le.Line, Reason: le.Err.Error()})
	}
	s.log.Info("flows imported", "format", out.Format, "host", host, "records", stored, "skipped", res.Bad, "by", callerOf(ctx).Name)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// startFlowCollectors starts the IPFIX / NetFlow v9 collector when
// cfg.IPFIXListen is set; it stops with ctx. A socket that cannot be
// opened is an error now, not a log line later.
func (s *Server) startFlowCollectors(ctx context.Context, bg *sync.WaitGroup) error {
	if s.cfg.IPFIXListen == "" {
		return nil
	}
	if s.flows == nil {
		return errors.New("manager: ipfix collector: flow store not open")
	}
	conn, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", s.cfg.IPFIXListen)
	if err != nil {
		return fmt.Errorf("manager: ipfix collector: listen %s: %w", s.cfg.IPFIXListen, err)
	}
	c := &ipfix.Collector{Listen: s.cfg.IPFIXListen, Host: "ipfix"}
	w := &collectorWriter{s: s, fs: s.flows, in: make(chan []flow.Record, collectorQueue)}
	s.registerCollectorMetrics(c, w)
	bg.Go(func() { w.run(ctx) })
	bg.Go(func() {
		err := c.Serve(ctx, conn, func(recs []flow.Record) error {
			// The collector reuses recs for the next datagram.
			select {
			case w.in <- append([]flow.Record(nil), recs...):
			case <-ctx.Done():
			}
			return nil
		})
		if err != nil {
			s.log.Error("ipfix collector stopped", "err", err)
		}
	})
	s.log.Info("ipfix collector listening", "addr", conn.LocalAddr().String())
	return nil
}

// collectorWriter gathers the collector's records into batches and stores
// them. It holds the flow store it started with: the server's field is
// cleared when the server closes, which may be before this goroutine ends.
type collectorWriter struct {
	s  *Server
	fs flowstore.Store
	in chan []flow.Record

	stored, failed atomic.Uint64
}

func (w *collectorWriter) run(ctx context.Context) {
	t := time.NewTicker(collectorFlushEvery)
	defer t.Stop()
	batch := make([]flow.Record, 0, collectorBatch)
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if err := w.s.storeFlows(ctx, w.fs, "ipfix collector", batch); err != nil {
			w.failed.Add(uint64(len(batch)))
			w.s.log.Warn("ipfix: records not stored", "records", len(batch), "err", err)
		} else {
			w.stored.Add(uint64(len(batch)))
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			// What arrived before the stop is stored, under a deadline
			// of its own: the server waits for this goroutine.
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for drained := false; !drained; {
				select {
				case recs := <-w.in:
					batch = append(batch, recs...)
				default:
					drained = true
				}
			}
			flush(fctx)
			cancel()
			return
		case recs := <-w.in:
			batch = append(batch, recs...)
			if len(batch) >= collectorBatch {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		}
	}
}

// registerCollectorMetrics exports the collector's counters. A second
// collector in the same server (Serve called again) keeps the first's
// series.
func (s *Server) registerCollectorMetrics(c *ipfix.Collector, w *collectorWriter) {
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_ipfix_" + name, Help: help},
			func() float64 { return float64(v()) })
	}
	for _, m := range []prometheus.Collector{
		counter("datagrams_total", "IPFIX / NetFlow v9 datagrams received.", func() uint64 { return c.Stats().Packets }),
		counter("records_total", "Flow records decoded from datagrams.", func() uint64 { return c.Stats().Records }),
		counter("malformed_datagrams_total", "Datagrams that could not be decoded (whole or in part).", func() uint64 { return c.Stats().Malformed }),
		counter("no_template_sets_total", "Data sets dropped because their template had not arrived yet.", func() uint64 { return c.Stats().NoTemplate }),
		counter("skipped_records_total", "Data records without both addresses (options, L2-only).", func() uint64 { return c.Stats().Skipped }),
		counter("unknown_exporter_datagrams_total", "Datagrams dropped from exporters beyond the template cache limit.", func() uint64 { return c.Stats().Unknown }),
		counter("stored_records_total", "Decoded records stored in the flow store.", w.stored.Load),
		counter("store_failed_records_total", "Decoded records the flow store refused (logged).", w.failed.Load),
	} {
		if err := s.metrics.reg.Register(m); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				s.log.Warn("ipfix: metric not registered", "err", err)
			}
		}
	}
}
