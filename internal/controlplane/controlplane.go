// Package controlplane is the manager's side of the agent channel: it enrolls
// hosts against one-time bootstrap tokens, keeps the host registry, turns the
// agents' workload reports into inventory, and streams each connected host
// its desired state over gRPC with mutual TLS.
package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/pki"
	"github.com/bulkhead/bulkhead/internal/store"
)

// SpanFunc computes the desired state of one host at the latest revision:
// the revision it reflects, the format of the payload (the data plane's IR)
// and the payload. Equal format and payload mean nothing changed for the
// host, and nothing is sent.
type SpanFunc func(ctx context.Context, host string) (revision int64, format string, payload []byte, err error)

// FlowSink stores the flow records a host sent. host is the name in the
// host's client certificate, and every record's Host is set to it: a host
// cannot write in another's name. A nil error means the records are stored;
// an error makes the agent send the batch again.
type FlowSink func(ctx context.Context, host string, recs []flow.Record) error

// AlertSink stores the IDS alerts a host sent, each one Suricata EVE JSON
// record. host is the name in the host's client certificate: the sink puts
// it in every record, whatever the payload says. It returns how many it
// accepted; records it cannot read are skipped (and counted by the sink),
// so that a batch is never resent forever. An error makes the agent send
// the batch again; the sink stores a resent alert once.
type AlertSink func(ctx context.Context, host string, eve [][]byte) (accepted int, err error)

// Config configures a ControlPlane. Store and CA are required; zero values
// of the rest take the defaults said on each field.
type Config struct {
	Store store.Store
	CA    *pki.CA
	Log   *slog.Logger // default slog.Default()
	// Span computes hosts' desired states; default EmptySpan.
	Span SpanFunc
	// Flows receives flow records; default: counted and discarded.
	Flows FlowSink
	// Alerts receives IDS alerts; default: counted and discarded.
	Alerts AlertSink
	// InventoryLock, when set, is held while a workload report is turned
	// into inventory, so that it does not interleave with the manager's
	// other read-modify-write changes of the inventory.
	InventoryLock sync.Locker
	// CertTTL is the lifetime of an agent certificate; default one year.
	CertTTL time.Duration
	// Heartbeat is how often an idle Watch stream carries a heartbeat;
	// default 10s. Agents reconnect after missing about three.
	Heartbeat time.Duration
	// Poll is how often the latest revision number is read to notice
	// revisions published by another manager on the same store; default
	// 2s. Changes made through this process are seen at once (Changed).
	Poll time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.CertTTL <= 0 {
		c.CertTTL = 365 * 24 * time.Hour
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ControlPlane serves the agent channel. Create it with New, serve it with
// Serve; it is safe for concurrent use.
type ControlPlane struct {
	cfg    Config
	log    *slog.Logger
	span   atomic.Pointer[SpanFunc]
	flows  FlowSink
	alerts AlertSink

	// changed wakes the publisher; it holds at most one pending wake-up,
	// so a burst of changes costs one recomputation.
	changed   chan struct{}
	published atomic.Int64

	mu    sync.Mutex
	hosts map[string]*hostState // by host name; only hosts seen since start

	flowRecords, flowDropped, flowMalformed atomic.Uint64
	alertRecords, alertDropped              atomic.Uint64
}

// hostState is what the manager knows of a host beyond the store: its live
// stream and what it was sent.
type hostState struct {
	session *session // nil when not connected
	// desiredRevision and desiredDigest describe the latest desired state
	// the host was sent, or was found to hold already.
	desiredRevision int64
	desiredDigest   []byte
	status          store.HostStatus
	statusKnown     bool // status was loaded from the store or reported
	// spanErr is why the host's desired state could not be computed, or "".
	spanErr string
}

// session is one open Watch stream.
type session struct {
	host   string
	ctx    context.Context
	cancel context.CancelCauseFunc
	// mailbox holds the newest desired state not yet sent; an older one
	// still waiting is replaced.
	mailbox chan *agentapi.DesiredState
	// refreshMu serialises span computations for the host, so that an
	// older computation never overtakes a newer one.
	refreshMu sync.Mutex
}

var (
	errReplaced = errors.New("replaced by a newer Watch stream of the same host")
	errRevoked  = errors.New("host certificate revoked or replaced")
	errStopping = errors.New("manager shutting down")
)

// New returns a control plane for cfg. It serves nothing until Serve.
func New(cfg Config) (*ControlPlane, error) {
	if cfg.Store == nil || cfg.CA == nil {
		return nil, errors.New("controlplane: Store and CA are required")
	}
	cfg.setDefaults()
	cp := &ControlPlane{
		cfg:     cfg,
		log:     cfg.Log.With("component", "controlplane"),
		flows:   cfg.Flows,
		alerts:  cfg.Alerts,
		changed: make(chan struct{}, 1),
		hosts:   map[string]*hostState{},
	}
	span := cfg.Span
	if span == nil {
		span = EmptySpan(cfg.Store)
	}
	cp.span.Store(&span)
	if cp.flows == nil {
		cp.flows = cp.discardFlows
	}
	if cp.alerts == nil {
		cp.alerts = cp.discardAlerts
	}
	return cp, nil
}

// EmptySpan gives every host an empty desired state at the latest revision:
// what a manager without a data-plane compiler can honestly promise.
func EmptySpan(st store.Store) SpanFunc {
	return func(ctx context.Context, host string) (int64, string, []byte, error) {
		revs, err := st.Revisions(ctx, 1)
		if err != nil {
			return 0, "", nil, err
		}
		var rev int64
		if len(revs) > 0 {
			rev = revs[0].Number
		}
		return rev, agentapi.FormatEmpty, nil, nil
	}
}

// SetSpan replaces the function that computes desired states and
// recomputes every connected host's.
func (cp *ControlPlane) SetSpan(fn SpanFunc) {
	if fn == nil {
		fn = EmptySpan(cp.cfg.Store)
	}
	cp.span.Store(&fn)
	cp.Changed()
}

// Changed tells the control plane that a new revision was published or the
// inventory changed: every connected host's desired state is recomputed and
// sent where it differs from what the host has.
func (cp *ControlPlane) Changed() {
	select {
	case cp.changed <- struct{}{}:
	default:
	}
}

func (cp *ControlPlane) discardFlows(ctx context.Context, host string, recs []flow.Record) error {
	cp.log.Debug("flow records discarded: no flow store", "host", host, "records", len(recs))
	return nil
}

func (cp *ControlPlane) discardAlerts(ctx context.Context, host string, eve [][]byte) (int, error) {
	cp.log.Debug("IDS alerts discarded: no alert store", "host", host, "alerts", len(eve))
	return 0, nil
}

// publish recomputes desired states whenever Changed is called or the
// latest revision moves, until ctx is done.
func (cp *ControlPlane) publish(ctx context.Context) {
	t := time.NewTicker(cp.cfg.Poll)
	defer t.Stop()
	cp.readPublished(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.changed:
			cp.readPublished(ctx)
		case <-t.C:
			if before := cp.published.Load(); cp.readPublished(ctx) == before {
				continue
			}
		}
		cp.refreshAll(ctx)
	}
}

// readPublished refreshes and returns the latest revision number.
func (cp *ControlPlane) readPublished(ctx context.Context) int64 {
	revs, err := cp.cfg.Store.Revisions(ctx, 1)
	if err != nil {
		if ctx.Err() == nil {
			cp.log.Warn("read latest revision", "err", err)
		}
		return cp.published.Load()
	}
	var n int64
	if len(revs) > 0 {
		n = revs[0].Number
	}
	cp.published.Store(n)
	return n
}

func (cp *ControlPlane) sessions() []*session {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := make([]*session, 0, len(cp.hosts))
	for _, h := range cp.hosts {
		if h.session != nil {
			out = append(out, h.session)
		}
	}
	return out
}

// refreshAll recomputes every connected host's desired state, a few hosts
// at a time.
func (cp *ControlPlane) refreshAll(ctx context.Context) {
	sessions := cp.sessions()
	sem := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for _, s := range sessions {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cp.refresh(ctx, s)
		}()
	}
	wg.Wait()
}

// refresh computes one host's desired state and queues it on its stream
// when it differs from what the host was last sent or holds.
func (cp *ControlPlane) refresh(ctx context.Context, s *session) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	span := *cp.span.Load()
	rev, format, payload, err := span(ctx, s.host)
	if err != nil {
		if ctx.Err() == nil {
			cp.log.Error("compute desired state", "host", s.host, "err", err)
			cp.mu.Lock()
			if h := cp.hosts[s.host]; h != nil {
				h.spanErr = err.Error()
			}
			cp.mu.Unlock()
		}
		return
	}
	digest := agentapi.Digest(format, payload)
	cp.mu.Lock()
	h := cp.hosts[s.host]
	if h != nil {
		h.spanErr = ""
	}
	if h == nil || h.session != s || bytes.Equal(h.desiredDigest, digest) {
		cp.mu.Unlock()
		return
	}
	h.desiredRevision, h.desiredDigest = rev, digest
	cp.mu.Unlock()
	ds := &agentapi.DesiredState{Revision: rev, Format: format, DesiredState: payload, Digest: digest}
	// Only refresh (under refreshMu) fills the mailbox, so after the drain
	// the send cannot block.
	select {
	case <-s.mailbox:
	default:
	}
	s.mailbox <- ds
	cp.log.Debug("desired state queued", "host", s.host, "revision", rev, "format", format, "bytes", len(payload))
}

// state returns the host's in-memory state, creating it; cp.mu held.
func (cp *ControlPlane) state(host string) *hostState {
	h := cp.hosts[host]
	if h == nil {
		h = &hostState{}
		cp.hosts[host] = h
	}
	return h
}

// attach makes s the host's stream, ending any earlier one, and records
// what the agent says it holds.
func (cp *ControlPlane) attach(ctx context.Context, host string, realized *agentapi.AckRequest) (*session, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	s := &session{host: host, ctx: sctx, cancel: cancel, mailbox: make(chan *agentapi.DesiredState, 1)}
	now := cp.cfg.Now()
	cp.mu.Lock()
	h := cp.state(host)
	if old := h.session; old != nil {
		old.cancel(errReplaced)
	}
	h.session = s
	h.desiredRevision = realized.GetRealizedRevision()
	h.desiredDigest = bytes.Clone(realized.GetRealizedDigest())
	h.status = statusFrom(realized, now)
	h.statusKnown = true
	st := h.status
	cp.mu.Unlock()
	if err := cp.cfg.Store.UpdateHostStatus(ctx, host, st); err != nil {
		cp.detach(s)
		return nil, err
	}
	cp.log.Info("agent connected", "host", host, "realized", st.RealizedRevision)
	return s, nil
}

// detach ends s and, if it is still the host's stream, marks the host
// disconnected.
func (cp *ControlPlane) detach(s *session) {
	s.cancel(context.Canceled)
	now := cp.cfg.Now()
	cp.mu.Lock()
	h := cp.hosts[s.host]
	current := h != nil && h.session == s
	var st store.HostStatus
	if current {
		h.session = nil
		h.status.LastSeen = now
		st = h.status
	}
	cp.mu.Unlock()
	if !current {
		return
	}
	// The stream's context is gone; the status write must not be.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cp.cfg.Store.UpdateHostStatus(ctx, s.host, st); err != nil && !errors.Is(err, store.ErrNotFound) {
		cp.log.Warn("record host status", "host", s.host, "err", err)
	}
	cp.log.Info("agent disconnected", "host", s.host)
}

// disconnect ends the host's stream, if any, with cause.
func (cp *ControlPlane) disconnect(host string, cause error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if h := cp.hosts[host]; h != nil && h.session != nil {
		h.session.cancel(cause)
	}
}

func (cp *ControlPlane) disconnectAll(cause error) {
	for _, s := range cp.sessions() {
		s.cancel(cause)
	}
}

func statusFrom(a *agentapi.AckRequest, now time.Time) store.HostStatus {
	return store.HostStatus{
		LastSeen:         now,
		RealizedRevision: a.GetRealizedRevision(),
		RealizedDigest:   bytes.Clone(a.GetRealizedDigest()),
		LastError:        a.GetError(),
	}
}

// ack records what the host realized.
func (cp *ControlPlane) ack(ctx context.Context, host string, a *agentapi.AckRequest) error {
	st := statusFrom(a, cp.cfg.Now())
	cp.mu.Lock()
	h := cp.state(host)
	h.status, h.statusKnown = st, true
	cp.mu.Unlock()
	if err := cp.cfg.Store.UpdateHostStatus(ctx, host, st); err != nil {
		return fmt.Errorf("controlplane: ack of host %s: %w", host, err)
	}
	if a.GetError() != "" {
		cp.log.Warn("agent could not apply desired state", "host", host, "revision", a.GetFailedRevision(), "realized", a.GetRealizedRevision(), "err", a.GetError())
	} else {
		cp.log.Info("agent realized desired state", "host", host, "revision", a.GetRealizedRevision())
	}
	return nil
}

// touch notes that the host just talked to us.
func (cp *ControlPlane) touch(host string) {
	now := cp.cfg.Now()
	cp.mu.Lock()
	cp.state(host).status.LastSeen = now
	cp.mu.Unlock()
}
