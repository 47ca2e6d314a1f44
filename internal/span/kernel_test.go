package span

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
)

var kernelPolicies = flag.Int("span.kernel-policies", 24, "random policies of TestKernelMatchesEvaluator")

// Ports the probe servers listen on in every lab workload.
var labPorts = []uint16{7001, 7002, 7003}

// How long a probe waits before it calls the flow dropped; allowed and
// rejected probes answer within milliseconds.
const dropTimeout = 400 * time.Millisecond

// kernelLab is two hosts with three workloads each, a table per host and
// probe servers everywhere.
type kernelLab struct {
	topo   *netlab.Topology
	hosts  []*netlab.Host
	tables map[string]*nft.Table
	byName map[string]*netlab.Workload // by policy workload name
	u      universe
}

func newKernelLab(t *testing.T) *kernelLab {
	t.Helper()
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	l := &kernelLab{topo: topo, tables: map[string]*nft.Table{}, byName: map[string]*netlab.Workload{}}
	t.Cleanup(func() {
		for name, tb := range l.tables {
			if err := tb.Remove(); err != nil {
				t.Errorf("remove table of %s: %v", name, err)
			}
		}
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	for i := 1; i <= 2; i++ {
		h, err := topo.AddHost(fmt.Sprintf("h%d", i))
		if err != nil {
			t.Fatal(err)
		}
		l.hosts = append(l.hosts, h)
		// Rejects of UDP and ICMP answer with ICMP errors, which the
		// kernel rate-limits (per destination, and per namespace); past
		// the limit a reject looks like a drop. The test checks verdicts,
		// not that limit.
		for _, kv := range [][2]string{
			{"net.ipv4.icmp_ratelimit", "0"},
			{"net.ipv6.icmp.ratelimit", "0"},
			{"net.ipv4.icmp_msgs_per_sec", "100000"},
			{"net.ipv4.icmp_msgs_burst", "100000"},
		} {
			if err := h.NS.Sysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		for j := 1; j <= 3; j++ {
			w, err := topo.AddWorkload(h, netlab.WorkloadConfig{Name: fmt.Sprintf("w%d", j)})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range labPorts {
				if _, err := w.Serve(p); err != nil {
					t.Fatal(err)
				}
			}
			name := h.Name + "-" + w.Name
			l.byName[name] = w
			l.u.workloads = append(l.u.workloads, &policy.Workload{
				Header: header(policy.KindWorkload, name),
				Spec: policy.WorkloadSpec{
					IPs:  []string{w.IPv4.String(), w.IPv6.String()},
					Host: h.Name, Interface: w.Interface,
				},
			})
		}
		tb, err := nft.New(nft.Config{NetNS: h.NS.Fd()})
		if err != nil {
			t.Fatal(err)
		}
		l.tables[h.Name] = tb
	}
	l.u.prefixes = []string{
		"10.1.0.0/16", "10.2.0.0/16", "10.0.0.0/8", "10.1.0.2/32", "10.2.0.0/30", "0.0.0.0/0",
		"fd00:b0:1::/64", "fd00:b0::/32", "fd00:b0:2::3/128", "fd00:b0:2::/126", "::/0",
	}
	l.u.specs = []string{
		"tcp/7001", "tcp/7002-7003", "tcp/7000-7001", "tcp", "udp/7001", "udp/7002-7010", "udp", "any",
		"icmp", "icmp/8", "icmp/8/0", "icmp/8/1", "icmp/0", "icmpv6/128", "icmpv6/128/0", "icmpv6/129", "icmpv6",
		"sctp/7001", "proto/47",
	}
	l.u.l7 = true
	// The probes carry no payload, so no L7 decision is ever made for
	// them; internal/l7's kernel tests send real payloads.
	l.u.noProfiles = true
	return l
}

// kernelProbe is one real connection attempt.
type kernelProbe struct {
	src, dst *netlab.Workload
	srcName  string
	dstName  string
	v6       bool
	proto    uint8
	port     uint16
}

func (p kernelProbe) String() string {
	fam := "v4"
	if p.v6 {
		fam = "v6"
	}
	what := fmt.Sprintf("proto %d port %d", p.proto, p.port)
	switch p.proto {
	case nft.ProtoTCP:
		what = fmt.Sprintf("tcp/%d", p.port)
	case nft.ProtoUDP:
		what = fmt.Sprintf("udp/%d", p.port)
	case nft.ProtoICMP, nft.ProtoICMPv6:
		what = "echo request"
	}
	return fmt.Sprintf("%s -> %s %s %s", p.srcName, p.dstName, fam, what)
}

func (p kernelProbe) flow() eval.Flow {
	f := eval.Flow{Src: p.src.Addr(p.v6), Dst: p.dst.Addr(p.v6), Proto: p.proto, ICMPType: -1, ICMPCode: -1}
	switch p.proto {
	case nft.ProtoICMP:
		f.ICMPType, f.ICMPCode = 8, 0
	case nft.ProtoICMPv6:
		f.ICMPType, f.ICMPCode = 128, 0
	default:
		f.Port = p.port
	}
	return f
}

func (p kernelProbe) run() (netlab.Outcome, error) {
	dst := p.dst.Addr(p.v6)
	switch p.proto {
	case nft.ProtoTCP:
		return p.src.ProbeTCP(netip.AddrPortFrom(dst, p.port), dropTimeout)
	case nft.ProtoUDP:
		return p.src.ProbeUDP(netip.AddrPortFrom(dst, p.port), dropTimeout)
	}
	return p.src.ProbeICMP(dst, dropTimeout)
}

// matches reports whether a conntrack entry is this probe's (one probe per
// addresses, protocol and port in a round, so the source port or ICMP id
// does not matter).
func (p kernelProbe) matches(f conntrack.Flow) bool {
	o := f.TupleOrig
	if o.IP.SourceAddress.Unmap() != p.src.Addr(p.v6) || o.IP.DestinationAddress.Unmap() != p.dst.Addr(p.v6) || o.Proto.Protocol != p.proto {
		return false
	}
	switch p.proto {
	case nft.ProtoICMP:
		return o.Proto.ICMPType == 8
	case nft.ProtoICMPv6:
		return o.Proto.ICMPType == 128
	}
	return o.Proto.DestinationPort == p.port
}

func expectedOutcome(a policy.Action, proto uint8) netlab.Outcome {
	switch a {
	case policy.ActionAllow:
		return netlab.Open
	case policy.ActionReject:
		if proto == nft.ProtoTCP {
			return netlab.Refused
		}
		return netlab.Unreachable
	}
	return netlab.Timeout
}

func (l *kernelLab) probes() []kernelProbe {
	var out []kernelProbe
	names := make([]string, 0, len(l.byName))
	for _, w := range l.u.workloads {
		names = append(names, w.Metadata.Name)
	}
	for _, a := range names {
		for _, b := range names {
			if a == b {
				continue
			}
			for _, v6 := range []bool{false, true} {
				icmp := nft.ProtoICMP
				if v6 {
					icmp = nft.ProtoICMPv6
				}
				base := kernelProbe{src: l.byName[a], dst: l.byName[b], srcName: a, dstName: b, v6: v6}
				for _, pp := range []struct {
					proto uint8
					port  uint16
				}{{nft.ProtoTCP, 7001}, {nft.ProtoTCP, 7002}, {nft.ProtoTCP, 7003}, {nft.ProtoUDP, 7001}, {nft.ProtoUDP, 7002}, {icmp, 0}} {
					p := base
					p.proto, p.port = pp.proto, pp.port
					out = append(out, p)
				}
			}
		}
	}
	return out
}

func (l *kernelLab) conntrack(t *testing.T, h *netlab.Host, flush bool) []conntrack.Flow {
	t.Helper()
	ct, err := conntrack.Dial(&netlink.Config{NetNS: h.NS.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if flush {
		if err := ct.Flush(); err != nil {
			t.Fatalf("flush conntrack of %s: %v", h.Name, err)
		}
		return nil
	}
	flows, err := ct.Dump(nil)
	if err != nil {
		t.Fatalf("dump conntrack of %s: %v", h.Name, err)
	}
	return flows
}

// TestKernelMatchesEvaluator is the differential test of the whole path:
// random policies, compiled by span for each of two hosts, applied with
// nft, and real TCP, UDP and ICMP probes between six workloads (within a
// host and across hosts, IPv4 and IPv6). Each probe's outcome (open,
// refused or unreachable at once for reject, timeout for drop) and, on
// every host the flow was accepted on, the ct mark (rule, action, log flag,
// point) must be the evaluator's.
func TestKernelMatchesEvaluator(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("span: needs root (network namespaces, nftables, conntrack)")
	}
	l := newKernelLab(t)
	seed := *propertySeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -span.seed=%d)", seed, seed)
	probes := l.probes()
	start := time.Now()
	var (
		total, marks, failures, inexact int
		oneFamily, entries              int
		outcomes                        = map[netlab.Outcome]int{}
		applyTime                       time.Duration
		rev                             int64
	)
	for i := 0; i < *kernelPolicies && failures == 0; i++ {
		if *propertyOnly >= 0 && i != *propertyOnly {
			continue
		}
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		s := randomSet(t, rng, l.u)
		e, err := eval.Compile(s)
		if err != nil {
			t.Fatalf("policy %d: compile: %v", i, err)
		}
		dp, stats, err := newDataPlane(t, e, s)
		if ie := (*InexactError)(nil); errors.As(err, &ie) {
			inexact++
			continue
		}
		if err != nil {
			t.Fatalf("policy %d: %v", i, err)
		}
		rev++
		for _, st := range stats {
			oneFamily += st.OneFamily
			entries += st.Entries
		}
		for _, h := range l.hosts {
			st := *dp.states[h.Name]
			st.Revision = uint64(rev)
			as := time.Now()
			if _, err := l.tables[h.Name].Apply(&st); err != nil {
				t.Fatalf("policy %d: host %s: apply: %v", i, h.Name, err)
			}
			applyTime += time.Since(as)
			l.conntrack(t, h, true)
		}
		report := func(format string, args ...any) {
			failures++
			t.Errorf("policy %d (-span.seed=%d -span.only=%d): %s\npolicy:\n%s\nstates:\n%s",
				i, seed, i, fmt.Sprintf(format, args...), dumpSet(s), dumpStates(dp))
		}

		type result struct {
			p   kernelProbe
			got netlab.Outcome
			err error
		}
		results := make([]result, len(probes))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for k, p := range probes {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				got, err := p.run()
				results[k] = result{p, got, err}
			}()
		}
		wg.Wait()

		flows := map[string][]conntrack.Flow{}
		for _, h := range l.hosts {
			flows[h.Name] = l.conntrack(t, h, false)
		}
		for _, r := range results {
			total++
			outcomes[r.got]++
			f := r.p.flow()
			d := e.Evaluate(f)
			model, _ := dp.decide(t, f)
			want := expectedOutcome(d.Verdict, r.p.proto)
			if r.err != nil || r.got != want {
				var limited string
				if r.got == netlab.Timeout && want == netlab.Unreachable {
					limited = "; ICMP errors rate-limited: " + l.icmpRateLimited()
				}
				report("%v: kernel %v (err %v), evaluator %s by %s (%d); kernel model %v%s", r.p, r.got, r.err, d.Verdict, d.Rule, d.RuleID, model, limited)
				continue
			}
			// Every host that let the flow through holds it in conntrack
			// with the mark of its last point.
			srcHost, dstHost := r.p.src.Host.Name, r.p.dst.Host.Name
			wantMarks := map[string]nft.Mark{}
			eg, in := d.Points[0], d.Points[len(d.Points)-1]
			if eg.Action == policy.ActionAllow {
				if srcHost == dstHost {
					if in.Action == policy.ActionAllow {
						wantMarks[srcHost] = nft.MakeMark(verdictOf(e, in.Action, in.RuleID), true)
					}
				} else {
					wantMarks[srcHost] = nft.MakeMark(verdictOf(e, eg.Action, eg.RuleID), false)
					if in.Action == policy.ActionAllow {
						wantMarks[dstHost] = nft.MakeMark(verdictOf(e, in.Action, in.RuleID), true)
					}
				}
			}
			for _, h := range l.hosts {
				var got []nft.Mark
				for _, fl := range flows[h.Name] {
					if r.p.matches(fl) {
						got = append(got, nft.Mark(fl.Mark))
					}
				}
				want, ok := wantMarks[h.Name]
				// A TCP reset answering the first SYN makes conntrack forget
				// the connection at once: a reject at a remote ingress
				// leaves nothing at the source's host.
				if ok && len(got) == 0 && r.p.proto == nft.ProtoTCP && srcHost != dstHost && h.Name == srcHost && in.Action == policy.ActionReject {
					continue
				}
				switch {
				case !ok && len(got) > 0:
					report("%v: host %s holds the flow with mark %v; the evaluator says %s by %s there", r.p, h.Name, got, d.Verdict, d.Rule)
				case ok && (len(got) != 1 || got[0] != want):
					report("%v: host %s: ct marks %v, want %v (evaluator: %s by %s)", r.p, h.Name, got, want, d.Verdict, d.Rule)
				case ok:
					marks++
				}
			}
		}
	}
	t.Logf("%d policies (%d inexact, skipped), %d probes, %d ct marks checked in %v (apply %v): outcomes %v; %d entries, %d rules held one family of a workload",
		*kernelPolicies, inexact, total, marks, time.Since(start).Round(time.Millisecond), applyTime.Round(time.Millisecond), outcomeCounts(outcomes), entries, oneFamily)
	if total == 0 {
		t.Fatal("no probe ran")
	}
}

// icmpRateLimited returns the hosts' counters of ICMP errors the kernel
// did not send because of its rate limits: a reject that timed out with
// these at 0 was not rate-limited.
func (l *kernelLab) icmpRateLimited() string {
	var parts []string
	for _, h := range l.hosts {
		for _, f := range []string{"/proc/net/snmp", "/proc/net/snmp6"} {
			out, err := h.NS.Exec(context.Background(), "cat", f)
			if err != nil {
				parts = append(parts, fmt.Sprintf("%s %s: %v", h.Name, f, err))
				continue
			}
			lines := strings.Split(string(out), "\n")
			for i, line := range lines {
				fields := strings.Fields(line)
				switch {
				case strings.HasPrefix(line, "Icmp:") && i+1 < len(lines) && strings.Contains(line, "RateLimit"):
					vals := strings.Fields(lines[i+1])
					for j := range fields {
						if strings.Contains(fields[j], "RateLimit") && j < len(vals) {
							parts = append(parts, fmt.Sprintf("%s %s %s", h.Name, fields[j], vals[j]))
						}
					}
				case len(fields) == 2 && strings.Contains(fields[0], "RateLimit"):
					parts = append(parts, fmt.Sprintf("%s %s %s", h.Name, fields[0], fields[1]))
				}
			}
		}
	}
	return strings.Join(parts, ", ")
}

func outcomeCounts(m map[netlab.Outcome]int) string {
	var parts []string
	for _, o := range []netlab.Outcome{netlab.Open, netlab.Refused, netlab.Unreachable, netlab.Timeout} {
		parts = append(parts, fmt.Sprintf("%v %d", o, m[o]))
	}
	return strings.Join(parts, ", ")
}
