package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/flow"
)

// Flow records go from the producers (conntrack, NFLOG; see internal/flow)
// into one bounded flow.Buffer that lives as long as the agent, and from
// there through a flow.Shipper to SendFlows. A shipper runs only inside a
// manager session: while the manager is unreachable the records wait in the
// buffer (the oldest dropped and counted when it is full), and the next
// session's shipper delivers them, starting with the batch the last one
// could not.

// FlowBuffer is where flow producers put their records for the manager.
func (a *Agent) FlowBuffer() *flow.Buffer { return a.flows }

// HostName is the host's name in the inventory and its certificate: the
// name flow producers put in their records and record IDs.
func (a *Agent) HostName() string { return a.cfg.HostName }

// FlowStats are the agent's flow counters since it started.
type FlowStats struct {
	Buffer flow.BufferStats
	// Batches and Records count what the manager acknowledged.
	Batches, Records uint64
	// Failures counts failed SendFlows calls; their batches were sent
	// again.
	Failures  uint64
	LastError string
}

// FlowStats returns the agent's flow counters.
func (a *Agent) FlowStats() FlowStats {
	s := &a.flowSender
	s.mu.Lock()
	st := FlowStats{Batches: s.batches, Records: s.records, Failures: s.failures, LastError: s.lastErr}
	s.mu.Unlock()
	st.Buffer = a.flows.Stats()
	return st
}

// flowSender is the shippers' flow.Sender: SendFlows on the agent's
// connection. It tells the manager how many records the buffer dropped
// since the last batch the manager acknowledged.
type flowSender struct {
	a *Agent

	mu sync.Mutex
	// reported is the buffer's drop count the manager knows of.
	reported                   uint64
	batches, records, failures uint64
	lastErr                    string
}

var _ flow.Sender = (*flowSender)(nil)

// errNotConnected is what the sender says before the agent has dialed.
var errNotConnected = errors.New("agent: not connected to the manager")

func (s *flowSender) Send(ctx context.Context, recs []flow.Record) error {
	c := s.a.client.Load()
	if c == nil {
		return errNotConnected
	}
	dropped := s.a.flows.Stats().Dropped
	s.mu.Lock()
	since := dropped - s.reported
	s.mu.Unlock()
	_, err := (*c).SendFlows(ctx, agentapi.NewFlowBatch(recs, since))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
		s.lastErr = err.Error()
		return fmt.Errorf("agent: send %d flow records: %w", len(recs), err)
	}
	s.reported = dropped
	s.batches++
	s.records += uint64(len(recs))
	return nil
}

// startShipper ships flow records until ctx is done, and returns a function
// that waits for it to have put back what it did not deliver.
func (a *Agent) startShipper(ctx context.Context) (wait func()) {
	sh := flow.NewShipper(a.flows, &a.flowSender, flow.ShipperConfig{
		MaxDelay:   a.cfg.FlowInterval,
		MinBackoff: a.cfg.BackoffMin,
		MaxBackoff: a.cfg.BackoffMax,
		// The shipper bounds each Send with it.
		SendTimeout: a.cfg.RPCTimeout,
		Log:         a.log,
	})
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	return func() { <-done }
}

// logFlowDrops says in the log, at most once per FlowLogInterval, how many
// flow records the buffer had to drop: the manager's only other sign of
// them is a count in the next batch it receives.
func (a *Agent) logFlowDrops(ctx context.Context) {
	t := time.NewTicker(a.cfg.FlowLogInterval)
	defer t.Stop()
	var last flow.BufferStats
	for {
		select {
		case <-ctx.Done():
			st := a.FlowStats()
			if st.Buffer.Len > 0 || st.Buffer.Dropped > 0 {
				a.log.Info("flow records at shutdown", "undelivered", st.Buffer.Len, "dropped", st.Buffer.Dropped,
					"delivered", st.Records, "pushed", st.Buffer.Pushed)
			}
			return
		case <-t.C:
		}
		st := a.flows.Stats()
		if st.Dropped == last.Dropped {
			continue
		}
		a.log.Warn("flow records dropped: buffer full while the manager is unreachable or slow",
			"dropped", st.Dropped-last.Dropped, "updates", st.DroppedUpdates-last.DroppedUpdates,
			"ends", st.DroppedEnds-last.DroppedEnds, "drops", st.DroppedDrops-last.DroppedDrops,
			"dropped_total", st.Dropped, "waiting", st.Len, "capacity", st.Capacity)
		last = st
	}
}

// workloadIndex maps the addresses of the host's workloads to their names
// ("" until the manager has named the workload).
type workloadIndex map[netip.Addr]string

// workloadNames keeps what flow producers ask per connection: is an address
// a workload of this host, and which. Discovery says which addresses are
// local; the manager's answers to reports say the workloads' names.
type workloadNames struct {
	mu      sync.Mutex // serialises rebuilds
	byIface map[string]string
	index   atomic.Pointer[workloadIndex]
}

// Local reports whether addr is an address of one of this host's
// workloads. It is the flow collectors' Local predicate.
func (a *Agent) Local(addr netip.Addr) bool {
	idx := a.names.index.Load()
	if idx == nil {
		return false
	}
	_, ok := (*idx)[addr.Unmap()]
	return ok
}

// Workload names the workload of this host that has addr, or "". It is the
// flow producers' Workload resolver.
func (a *Agent) Workload(addr netip.Addr) string {
	idx := a.names.index.Load()
	if idx == nil {
		return ""
	}
	return (*idx)[addr.Unmap()]
}

// nameWorkloads records the manager's names of the reported interfaces.
func (a *Agent) nameWorkloads(byIface map[string]string) {
	a.names.mu.Lock()
	a.names.byIface = byIface
	a.names.mu.Unlock()
	a.indexWorkloads()
}

// indexWorkloads rebuilds the address index from the newest discovery and
// names.
func (a *Agent) indexWorkloads() {
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	ifaces, _ := a.inv.get()
	idx := workloadIndex{}
	for _, ifc := range ifaces {
		for _, s := range ifc.GetIps() {
			if addr, err := netip.ParseAddr(s); err == nil {
				idx[addr.Unmap()] = a.names.byIface[ifc.GetName()]
			}
		}
	}
	a.names.index.Store(&idx)
}
