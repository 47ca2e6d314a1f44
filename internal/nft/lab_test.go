package nft

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/netlab"
)

// Shared fixture of the kernel tests: hosts h1..hN with workloads w1..wM,
// probe servers on every workload, one Table per host, and a small policy
// model that produces each host's HostState the way the agent will.

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nft: needs root (network namespaces, nftables, conntrack)")
	}
}

// Ports the probe servers listen on in every workload.
const (
	portA = 7001
	portB = 7002
	portC = 7003
)

// Timeouts: a silent drop is recognized when nothing came back in
// dropTimeout; an allowed or rejected probe answers within milliseconds.
const dropTimeout = 300 * time.Millisecond

// slowTimeout bounds a probe that must succeed (or be rejected) on a busy
// machine.
const slowTimeout = 5 * time.Second

type lab struct {
	t      testing.TB
	topo   *netlab.Topology
	hosts  []*netlab.Host
	tables map[string]*Table // by host name
	ident  map[*netlab.Workload]Identity
	// ranges, when set, replaces the per-address identity ranges built
	// from ident (which must then agree with it).
	ranges []IdentityRange
}

func newLab(t testing.TB, hosts, workloads int, cfg Config) *lab {
	t.Helper()
	needRoot(t)
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, topo: topo, tables: map[string]*Table{}, ident: map[*netlab.Workload]Identity{}}
	t.Cleanup(func() {
		for _, tb := range l.tables {
			tb.Remove()
		}
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	for i := 1; i <= hosts; i++ {
		h, err := topo.AddHost(fmt.Sprintf("h%d", i))
		if err != nil {
			t.Fatal(err)
		}
		l.hosts = append(l.hosts, h)
		for j := 1; j <= workloads; j++ {
			w, err := topo.AddWorkload(h, netlab.WorkloadConfig{Name: fmt.Sprintf("w%d", j)})
			if err != nil {
				t.Fatal(err)
			}
			l.ident[w] = Identity(100*i + j)
			for _, p := range []uint16{portA, portB, portC} {
				if _, err := w.Serve(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		c := cfg
		c.NetNS = h.NS.Fd()
		tb, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		l.tables[h.Name] = tb
	}
	return l
}

// w returns workload "hN/wM".
func (l *lab) w(host, wl int) *netlab.Workload {
	return l.hosts[host-1].Workload(fmt.Sprintf("w%d", wl))
}

func (l *lab) identities() []IdentityRange {
	if l.ranges != nil {
		return l.ranges
	}
	var out []IdentityRange
	for w, id := range l.ident {
		out = append(out,
			IdentityRange{Lo: w.IPv4, Hi: w.IPv4, Identity: id},
			IdentityRange{Lo: w.IPv6, Hi: w.IPv6, Identity: id})
	}
	return out
}

// rule is a test policy rule, applied to every workload; nil src/dst is any.
type rule struct {
	id       uint32
	src, dst []Identity
	proto    uint8
	ports    PortRange
	action   Action
	dir      string // "in", "out" or "" (both)
	log      bool
}

type policy struct {
	rules []rule
	def   Verdict
}

func contains(ids []Identity, id Identity) bool {
	if ids == nil {
		return true
	}
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// entries is what the agent's producer does: the rules that apply at one
// point of workload id, as an ordered entry list.
func (p policy) entries(id Identity, ingress bool) []Entry {
	var out []Entry
	for _, r := range p.rules {
		if ingress && r.dir == "out" || !ingress && r.dir == "in" {
			continue
		}
		self, peers := r.src, r.dst
		if ingress {
			self, peers = r.dst, r.src
		}
		if !contains(self, id) {
			continue
		}
		v := Verdict{Rule: r.id, Action: r.action, Log: r.log}
		if peers == nil {
			out = append(out, Entry{Peer: AnyPeer, Proto: r.proto, Ports: r.ports, Verdict: v})
			continue
		}
		for _, peer := range peers {
			out = append(out, Entry{Peer: peer, Proto: r.proto, Ports: r.ports, Verdict: v})
		}
	}
	return out
}

// state is the HostState of host h under p at revision rev.
func (l *lab) state(h *netlab.Host, p policy, rev uint64) *HostState {
	st := &HostState{Revision: rev, Identities: l.identities(), EgressDefault: p.def, IngressDefault: p.def}
	for _, w := range h.Workloads() {
		id := l.ident[w]
		st.Workloads = append(st.Workloads, Workload{
			Name: w.Name, Interface: w.Interface,
			Egress: p.entries(id, false), Ingress: p.entries(id, true),
		})
	}
	return st
}

// apply installs p on every host (full or incremental).
func (l *lab) apply(p policy, rev uint64, incremental bool) {
	l.t.Helper()
	for _, h := range l.hosts {
		tb := l.tables[h.Name]
		var err error
		if incremental {
			_, err = tb.ApplyIncremental(l.state(h, p, rev))
		} else {
			_, err = tb.ApplyFull(l.state(h, p, rev))
		}
		if err != nil {
			l.t.Fatalf("host %s: %v", h.Name, err)
		}
	}
}

// point evaluates one enforcement point the way the evaluator does.
func (p policy) point(self, peer Identity, proto uint8, port uint16, ingress bool) Verdict {
	for _, e := range p.entries(self, ingress) {
		if e.Peer != AnyPeer && e.Peer != peer {
			continue
		}
		if e.Proto != ProtoAny && e.Proto != proto {
			continue
		}
		if port < e.Ports.Lo || port > e.Ports.Hi {
			continue
		}
		return e.Verdict
	}
	return p.def
}

// expect is the flow's final mark under the architecture's semantics: the
// dropping point's rule (egress first), else ingress, else egress.
func (p policy) expect(src, dst Identity, proto uint8, port uint16) Mark {
	eg := p.point(src, dst, proto, port, false)
	if eg.Action != Allow {
		return MakeMark(eg, false)
	}
	return MakeMark(p.point(dst, src, proto, port, true), true)
}

// outcome is what a client should see for a verdict.
func outcome(a Action, proto uint8) netlab.Outcome {
	switch a {
	case Allow:
		return netlab.Open
	case Reject:
		if proto == ProtoTCP {
			return netlab.Refused
		}
		return netlab.Unreachable
	}
	return netlab.Timeout
}

type probe struct {
	src, dst *netlab.Workload
	v6       bool
	proto    uint8  // TCP, UDP, or ICMP/ICMPv6 (an echo request)
	port     uint16 // TCP/UDP only
}

func (pr probe) String() string {
	fam := "v4"
	if pr.v6 {
		fam = "v6"
	}
	return fmt.Sprintf("%s/%s->%s/%s %s proto %d port %d", pr.src.Host.Name, pr.src.Name, pr.dst.Host.Name, pr.dst.Name, fam, pr.proto, pr.port)
}

func (pr probe) run(timeout time.Duration) (netlab.Outcome, error) {
	addr := pr.dst.Addr(pr.v6)
	switch pr.proto {
	case ProtoTCP:
		return pr.src.ProbeTCP(netip.AddrPortFrom(addr, pr.port), timeout)
	case ProtoUDP:
		return pr.src.ProbeUDP(netip.AddrPortFrom(addr, pr.port), timeout)
	default:
		return pr.src.ProbeICMP(addr, timeout)
	}
}

// kernelPort is the value the kernel matches for a probe: the port, or the
// ICMP type<<8|code of an echo request.
func (pr probe) kernelPort() uint16 {
	switch pr.proto {
	case ProtoICMP:
		return 8 << 8
	case ProtoICMPv6:
		return 128 << 8
	}
	return pr.port
}

// checkAll runs probes in parallel and compares each outcome with want.
func (l *lab) checkAll(probes []probe, want func(probe) netlab.Outcome) {
	l.t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, pr := range probes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			got, err := pr.run(dropTimeout)
			w := want(pr)
			if got == netlab.Timeout && w != netlab.Timeout {
				// A loaded machine can be slow to answer; a drop stays
				// silent however long we wait.
				got, err = pr.run(slowTimeout)
			}
			if err != nil || got != w {
				mu.Lock()
				l.t.Errorf("%v: got %v (err %v), want %v", pr, got, err, w)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func (l *lab) nftList(h *netlab.Host) string {
	out, err := h.NS.Exec(context.Background(), "nft", "list", "table", "inet", DefaultTable)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(out)
}
