package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

// inventory holds the newest interface snapshot discovery found.
type inventory struct {
	mu      sync.Mutex
	ifaces  []*agentapi.Interface
	version uint64 // bumped on every change; 0 until the first scan
	wake    chan struct{}
}

func (inv *inventory) set(ifaces []*agentapi.Interface) {
	inv.mu.Lock()
	inv.ifaces = ifaces
	inv.version++
	inv.mu.Unlock()
	select {
	case inv.wake <- struct{}{}:
	default:
	}
}

func (inv *inventory) get() ([]*agentapi.Interface, uint64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.ifaces, inv.version
}

// follow keeps a session with the manager open, reconnecting with backoff,
// until ctx is done.
func (a *Agent) follow(ctx context.Context, client agentapi.AgentClient, resetConnect func()) {
	bo := newBackoff(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for {
		// The agent's backoff alone paces reconnection: without this the
		// channel's own backoff stacks on top of it and a manager back from
		// an outage could wait up to twice BackoffMax for its agents.
		if resetConnect != nil {
			resetConnect()
		}
		healthy, err := a.session(ctx, client)
		if ctx.Err() != nil {
			return
		}
		if healthy {
			bo.reset()
		}
		d := bo.next()
		level := a.log.Warn
		if status.Code(err) == codes.PermissionDenied {
			level = a.log.Error // revoked or replaced: only an operator can fix it
		}
		level("manager session ended; reconnecting", "manager", a.cfg.Manager, "err", err, "retry_in", d.Round(time.Millisecond))
		if !sleep(ctx, d) {
			return
		}
	}
}

// session runs one Watch stream and, beside it, sends acknowledgements,
// workload reports and (through a flow.Shipper) flow records. It returns
// when the stream breaks, the manager falls silent, or ctx is done; healthy
// says whether the manager answered at all.
func (a *Agent) session(ctx context.Context, client agentapi.AgentClient) (healthy bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Watch(sctx, &agentapi.WatchRequest{Realized: a.status.get()})
	if err != nil {
		return false, err
	}
	var (
		heard   atomic.Int64 // unix nanos of the last message
		gotAny  atomic.Bool
		recvErr = make(chan error, 1)
	)
	heard.Store(time.Now().UnixNano())
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			heard.Store(time.Now().UnixNano())
			gotAny.Store(true)
			switch e := ev.Event.(type) {
			case *agentapi.WatchEvent_Desired:
				a.log.Debug("desired state received", "revision", e.Desired.Revision, "format", e.Desired.Format)
				a.offer(e.Desired)
			case *agentapi.WatchEvent_Heartbeat:
				a.log.Debug("heartbeat", "published", e.Heartbeat.PublishedRevision)
			}
		}
	}()

	var (
		reported uint64 // inventory version the manager has
		lastAck  *agentapi.AckRequest
	)
	report := func() error {
		ifaces, v := a.inv.get()
		if v == 0 || v == reported {
			return nil
		}
		rctx, cancel := context.WithTimeout(sctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err := client.ReportWorkloads(rctx, &agentapi.WorkloadReport{Interfaces: ifaces})
		if err != nil {
			return fmt.Errorf("report workloads: %w", err)
		}
		reported = v
		a.nameWorkloads(resp.GetWorkloads())
		if len(resp.Created)+len(resp.Updated)+len(resp.Deleted) > 0 {
			a.log.Info("workloads reported", "interfaces", len(ifaces), "created", resp.Created, "updated", resp.Updated, "deleted", resp.Deleted)
		}
		return nil
	}
	ack := func() error {
		st := a.status.get()
		if lastAck != nil && proto.Equal(st, lastAck) {
			return nil
		}
		rctx, cancel := context.WithTimeout(sctx, a.cfg.RPCTimeout)
		defer cancel()
		if _, err := client.Ack(rctx, st); err != nil {
			return fmt.Errorf("ack revision %d: %w", st.RealizedRevision, err)
		}
		lastAck = st
		return nil
	}
	// What the WatchRequest said may be stale by the time the stream is
	// up; an Ack is cheap.
	lastAck = nil
	watchdog := time.NewTicker(max(a.cfg.HeartbeatTimeout/4, 10*time.Millisecond))
	defer watchdog.Stop()
	if err := errors.Join(report(), ack()); err != nil {
		return gotAny.Load(), err
	}
	// The manager took our calls: whatever happens next, the next
	// reconnection starts from the shortest wait.
	gotAny.Store(true)
	a.log.Info("connected to the manager", "manager", a.cfg.Manager, "flow_records_waiting", a.flows.Len())
	// Flow records go out while the session lasts; at its end the
	// shipper puts its undelivered batch back for the next session.
	waitShipper := a.startShipper(sctx)
	defer func() { cancel(); waitShipper() }()
	waitAlerts := a.startAlertShipper(sctx) // alerts.go
	defer func() { cancel(); waitAlerts() }()
	for {
		var err error
		select {
		case <-ctx.Done():
			return gotAny.Load(), ctx.Err()
		case err = <-recvErr:
			if err == nil {
				err = errors.New("manager closed the stream")
			}
			return gotAny.Load(), err
		case <-a.ackWake:
			err = ack()
		case <-a.inv.wake:
			err = report()
		case <-watchdog.C:
			if silent := time.Since(time.Unix(0, heard.Load())); silent > a.cfg.HeartbeatTimeout {
				err = fmt.Errorf("no message from the manager for %s", silent.Round(time.Second))
			}
		}
		if err != nil {
			return gotAny.Load(), err
		}
	}
}
