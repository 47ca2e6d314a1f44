// Package agent is the process on every host: it enrolls with the manager,
// reports the host's workload interfaces, receives the host's desired state
// over gRPC with mutual TLS, hands it to an Enforcer (the data plane), keeps
// the last realized state on disk so that enforcement survives restarts and a
// missing manager, repairs drift, and carries the host's flow records and
// IDS alerts to the manager, keeping them while it is unreachable.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/flow"
)

// Enforcer is the data plane: it makes the kernel hold a desired state. The
// agent calls it from one goroutine at a time.
type Enforcer interface {
	// Apply makes the kernel enforce payload (in format) as revision, in
	// one atomic step: on error the previous state stays in force. An
	// unknown format is an error. agentapi.FormatEmpty, with no payload,
	// means the host has no policy: enforce nothing.
	Apply(ctx context.Context, revision int64, format string, payload []byte) error
	// Verify reports the revision the kernel holds and whether it is
	// exactly what the last Apply installed (ok false: drift).
	Verify(ctx context.Context) (revision int64, ok bool, err error)
	// Remove deletes everything the enforcer installed.
	Remove(ctx context.Context) error
}

// Config configures an agent. Zero durations take the defaults said on each
// field.
type Config struct {
	// Manager is host:port of the manager's agent listener.
	Manager string
	// BootstrapToken enrolls the host on its first start; later starts
	// use the certificate in StateDir and need no token.
	BootstrapToken string
	// CAFile or CAFingerprint (hex SHA-256 of the CA certificate) says
	// which manager to trust when enrolling. After enrollment the CA is
	// kept in StateDir; either, when given, must still match it.
	CAFile        string
	CAFingerprint string
	// StateDir holds the key, certificates and last realized state.
	StateDir string
	// HostName is the host's name in the inventory; default: the system
	// host name, lowercased.
	HostName string
	// IfacePattern selects workload interfaces by name (path.Match
	// syntax); default "bhw*".
	IfacePattern string
	// Bridge, when set, restricts workload interfaces to ports of this
	// bridge, and finds their addresses in its neighbour table.
	Bridge string
	// NetNS is the path of the network namespace whose interfaces the
	// agent manages (e.g. /var/run/netns/host1); "" is the agent's own.
	NetNS string

	// DriftInterval is how often the enforcer is verified; default 5s.
	DriftInterval time.Duration
	// BackoffMin and BackoffMax bound the wait between reconnections,
	// which doubles (with jitter) after each failure; defaults 500ms, 30s.
	BackoffMin, BackoffMax time.Duration
	// HeartbeatTimeout is how long the agent waits for any message from
	// the manager before reconnecting; default 35s.
	HeartbeatTimeout time.Duration
	// Resync is how often interfaces are rescanned even without netlink
	// events; default 1m.
	Resync time.Duration
	// FlowInterval is how long a flow record may wait for its batch to
	// fill before it is sent; default 1s.
	FlowInterval time.Duration
	// FlowBuffer bounds the flow records kept while the manager is
	// unreachable; default flow.DefaultBufferCapacity. The oldest are
	// dropped, and counted.
	FlowBuffer int
	// FlowLogInterval is how often, at most, the agent logs how many flow
	// records it had to drop; default 1m.
	FlowLogInterval time.Duration
	// RPCTimeout bounds each unary call; default 10s.
	RPCTimeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.HostName == "" {
		hn, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("agent: host name: %w", err)
		}
		c.HostName = strings.ToLower(hn)
	}
	if c.IfacePattern == "" {
		c.IfacePattern = "bhw*"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DriftInterval, 5*time.Second)
	def(&c.BackoffMin, 500*time.Millisecond)
	def(&c.BackoffMax, 30*time.Second)
	def(&c.HeartbeatTimeout, 35*time.Second)
	def(&c.Resync, time.Minute)
	def(&c.FlowInterval, time.Second)
	def(&c.FlowLogInterval, time.Minute)
	def(&c.RPCTimeout, 10*time.Second)
	if c.FlowBuffer <= 0 {
		c.FlowBuffer = flow.DefaultBufferCapacity
	}
	return nil
}

// Validate checks a configuration after defaults are applied.
func (c *Config) Validate() error {
	if c.Manager == "" {
		return errors.New("agent config: manager: want host:port of the manager's agent listener")
	}
	if c.StateDir == "" {
		return errors.New("agent config: state dir: must not be empty")
	}
	if c.CAFile != "" && c.CAFingerprint != "" {
		return errors.New("agent config: give --ca or --ca-fingerprint, not both")
	}
	if c.CAFingerprint != "" {
		if _, err := parseFingerprint(c.CAFingerprint); err != nil {
			return fmt.Errorf("agent config: ca fingerprint: %w", err)
		}
	}
	if c.BackoffMin > c.BackoffMax {
		return fmt.Errorf("agent config: backoff min %s exceeds max %s", c.BackoffMin, c.BackoffMax)
	}
	return nil
}

// Agent is one host's agent. Create it with New and run it with Run.
type Agent struct {
	cfg Config
	log *slog.Logger
	enf Enforcer

	// desired holds the newest desired state received and not yet
	// applied; an older one still waiting is replaced.
	desired chan *agentapi.DesiredState
	status  statusBox
	ackWake chan struct{}

	inv   inventory
	names workloadNames
	// flows outlives sessions: it keeps the records while the manager is
	// away (flows.go).
	flows      *flow.Buffer
	flowSender flowSender
	client     atomic.Pointer[agentapi.AgentClient] // nil until Run dialed
	// alerts are the IDS alerts waiting for the manager (alerts.go).
	alerts alertQueue
}

// New returns an agent for cfg that enforces through enf.
func New(cfg Config, enf Enforcer, log *slog.Logger) (*Agent, error) {
	if enf == nil {
		return nil, errors.New("agent: no enforcer")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{
		cfg:     cfg,
		log:     log.With("component", "agent", "host", cfg.HostName),
		enf:     enf,
		desired: make(chan *agentapi.DesiredState, 1),
		ackWake: make(chan struct{}, 1),
		flows:   flow.NewBuffer(cfg.FlowBuffer),
	}
	a.flowSender.a = a
	a.inv.wake = make(chan struct{}, 1)
	return a, nil
}

// Run enforces the last realized state at once, then enrolls if needed,
// discovers workloads and follows the manager until ctx is done. It returns
// early only for what retrying cannot fix: a refused enrollment, unusable
// credentials, a state dir it cannot write.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	saved, err := loadDesired(a.cfg.StateDir)
	if err != nil {
		// A damaged state file must not keep the host from following the
		// manager; the manager resends the state.
		a.log.Error("ignoring the saved desired state", "err", err)
		saved = nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	enforced, restored := make(chan struct{}), make(chan struct{})
	go func() { a.enforce(ctx, saved, restored); close(enforced) }()
	defer func() { cancel(); <-enforced }()
	logged := make(chan struct{})
	go func() { a.logFlowDrops(ctx); close(logged) }()
	defer func() { cancel(); <-logged }()

	creds, err := a.credentials(ctx)
	if err != nil {
		return err
	}
	conn, err := a.dial(creds)
	if err != nil {
		return err
	}
	defer conn.Close()

	discovered := make(chan struct{})
	go func() { a.discoverLoop(ctx); close(discovered) }()
	defer func() { cancel(); <-discovered }()

	client := agentapi.NewAgentClient(conn)
	a.client.Store(&client)
	// The first Watch tells the manager what the host holds: the saved
	// state once it is back in the kernel, not the nothing before.
	select {
	case <-restored:
	case <-ctx.Done():
		return nil
	}
	a.follow(ctx, client, conn.ResetConnectBackoff)
	return nil
}

// backoff is an exponential backoff with full jitter.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max, cur: min} }

// next returns how long to wait before the next attempt: a random time
// between half and all of the current step, which then doubles.
func (b *backoff) next() time.Duration {
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.min }

// sleep waits d or until ctx is done, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
