package nft

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/netlab"
)

// The data-plane benchmarks, run as root with
//
//	go test -run XXX -bench . ./internal/nft
//
// measure one host's forward path between two workloads (client w1, server
// w2): both enforcement points of every connection run on that host. Each
// configuration reports its rate and its ratio to the no-firewall baseline
// measured in the same run. BULKHEAD_BENCH_SECONDS sets the length of each
// measurement (default 2).
//
// Everything runs on this machine's CPUs, clients and servers included, so
// other load disturbs the wall-clock rates; the CPU-cost ratios (CPU time
// of this process per connection or per byte, baseline over firewall) are
// reported beside them as the steadier measure.

const (
	benchConnPort   = 7001
	benchStreamPort = 7002
	benchWorkers    = 4
)

func benchSeconds() time.Duration {
	if s, err := strconv.ParseFloat(os.Getenv("BULKHEAD_BENCH_SECONDS"), 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	return 2 * time.Second
}

type benchEnv struct {
	topo           *netlab.Topology
	host           *netlab.Host
	client, server *netlab.Workload
	table          *Table
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	needRoot(b)
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{topo: topo}
	b.Cleanup(func() {
		if e.table != nil {
			e.table.Remove()
		}
		e.iptablesFlush()
		topo.Close()
	})
	if e.host, err = topo.AddHost("h1"); err != nil {
		b.Fatal(err)
	}
	if e.client, err = topo.AddWorkload(e.host, netlab.WorkloadConfig{Name: "client"}); err != nil {
		b.Fatal(err)
	}
	if e.server, err = topo.AddWorkload(e.host, netlab.WorkloadConfig{Name: "server"}); err != nil {
		b.Fatal(err)
	}
	if err := e.server.ServeGreeter(benchConnPort, 2); err != nil {
		b.Fatal(err)
	}
	if err := e.server.Sink(benchStreamPort); err != nil {
		b.Fatal(err)
	}
	if e.table, err = New(Config{NetNS: e.host.NS.Fd()}); err != nil {
		b.Fatal(err)
	}
	return e
}

const (
	clientID Identity = 1001
	serverID Identity = 1002
)

// benchPeer is the address of synthetic peer identity i.
func benchPeer(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}) }

// benchPolicy builds n rules the way a large policy lands on one host: half
// allow synthetic peers into the server on some port or range, half allow the
// client out to synthetic peers; one peer identity per 4 rules. The rule that
// allows client -> server comes last, which is the worst case for a linear
// chain (and makes no difference to maps). It returns the HostState and the
// same rules as an iptables-restore script.
func benchPolicy(n int, client, server *netlab.Workload) (*HostState, string) {
	peers := max(n/4, 1)
	st := &HostState{
		Revision:       uint64(n),
		EgressDefault:  Verdict{Rule: 1, Action: Drop},
		IngressDefault: Verdict{Rule: 1, Action: Drop},
		Identities: []IdentityRange{
			{Lo: client.IPv4, Hi: client.IPv4, Identity: clientID},
			{Lo: server.IPv4, Hi: server.IPv4, Identity: serverID},
		},
	}
	for i := 0; i < peers; i++ {
		a := benchPeer(i)
		st.Identities = append(st.Identities, IdentityRange{Lo: a, Hi: a, Identity: Identity(2000 + i)})
	}
	var ipt strings.Builder
	ipt.WriteString("*filter\n:FORWARD ACCEPT [0:0]\n:BH - [0:0]\n-A FORWARD -j BH\n")
	ipt.WriteString("-A BH -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n")
	var egress, ingress []Entry
	for i := 0; i < n; i++ {
		port := uint16(1024 + (i*7919)%60000)
		ports := Port(port)
		dport := strconv.Itoa(int(port))
		if i%10 == 0 {
			ports = Ports(port, port+9)
			dport = fmt.Sprintf("%d:%d", port, port+9)
		}
		v := Verdict{Rule: uint32(10 + i), Action: Allow}
		if i < n/2 {
			p := (i * 7) % peers
			ingress = append(ingress, Entry{Peer: Identity(2000 + p), Proto: ProtoTCP, Ports: ports, Verdict: v})
			fmt.Fprintf(&ipt, "-A BH -s %s/32 -d %s/32 -p tcp -m tcp --dport %s -j ACCEPT\n", benchPeer(p), server.IPv4, dport)
		} else {
			p := (i * 13) % peers
			egress = append(egress, Entry{Peer: Identity(2000 + p), Proto: ProtoTCP, Ports: ports, Verdict: v})
			fmt.Fprintf(&ipt, "-A BH -s %s/32 -d %s/32 -p tcp -m tcp --dport %s -j ACCEPT\n", client.IPv4, benchPeer(p), dport)
		}
	}
	last := Verdict{Rule: uint32(10 + n), Action: Allow}
	both := Ports(benchConnPort, benchStreamPort)
	egress = append(egress, Entry{Peer: serverID, Proto: ProtoTCP, Ports: both, Verdict: last})
	ingress = append(ingress, Entry{Peer: clientID, Proto: ProtoTCP, Ports: both, Verdict: last})
	fmt.Fprintf(&ipt, "-A BH -s %s/32 -d %s/32 -p tcp -m tcp --dport %d:%d -j ACCEPT\n", client.IPv4, server.IPv4, benchConnPort, benchStreamPort)
	ipt.WriteString("-A BH -j DROP\nCOMMIT\n")
	st.Workloads = []Workload{
		{Name: client.Name, Interface: client.Interface, Egress: egress},
		{Name: server.Name, Interface: server.Interface, Ingress: ingress},
	}
	return st, ipt.String()
}

func (e *benchEnv) iptablesFlush() {
	ctx := context.Background()
	e.host.NS.Exec(ctx, "iptables-legacy", "-F")
	e.host.NS.Exec(ctx, "iptables-legacy", "-X")
}

// reset returns the host to no firewall at all and an empty conntrack table.
func (e *benchEnv) reset(b *testing.B) {
	b.Helper()
	if err := e.table.Remove(); err != nil {
		b.Fatal(err)
	}
	e.iptablesFlush()
	e.host.NS.Exec(context.Background(), "nft", "delete", "table", "inet", "ctonly")
	e.host.NS.Exec(context.Background(), "conntrack", "-F")
	time.Sleep(100 * time.Millisecond)
}

type firewall struct {
	name  string
	rules int
	kind  string // "none", "conntrack", "nft", "iptables-legacy"
}

// ctOnly is the floor of any stateful firewall: conntrack on, established
// traffic accepted, no policy at all.
const ctOnly = `table inet ctonly {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
	}
}`

func (e *benchEnv) install(b *testing.B, fw firewall) {
	b.Helper()
	e.reset(b)
	st, ipt := benchPolicy(fw.rules, e.client, e.server)
	switch fw.kind {
	case "nft":
		if _, err := e.table.ApplyFull(st); err != nil {
			b.Fatal(err)
		}
	case "conntrack":
		if _, err := e.host.NS.ExecInput(context.Background(), ctOnly, "nft", "-f", "-"); err != nil {
			b.Fatal(err)
		}
	case "iptables-legacy":
		if _, err := e.host.NS.ExecInput(context.Background(), ipt, "iptables-legacy-restore"); err != nil {
			b.Fatal(err)
		}
	}
}

// sample is one measurement: a rate, and the CPU this process (clients,
// servers and, through softirqs run on their threads, the forward path)
// spent per unit of work.
type sample struct {
	rate  float64 // per second of wall time
	cpuUS float64 // CPU microseconds per unit
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (e *benchEnv) connRate(b *testing.B) sample {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchSeconds())
	defer cancel()
	start, cpu0 := time.Now(), cpuTime()
	st, err := e.client.ConnectLoop(ctx, netip.AddrPortFrom(e.server.IPv4, benchConnPort), benchWorkers, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if st.Failed > st.OK/100 {
		b.Fatalf("%d of %d connections failed", st.Failed, st.OK+st.Failed)
	}
	cpu := cpuTime() - cpu0
	return sample{float64(st.OK) / time.Since(start).Seconds(), float64(cpu.Microseconds()) / float64(st.OK)}
}

// streamRate returns Gbit/s and CPU µs per MB.
func (e *benchEnv) streamRate(b *testing.B) sample {
	b.Helper()
	start, cpu0 := time.Now(), cpuTime()
	n, err := e.client.Stream(netip.AddrPortFrom(e.server.IPv4, benchStreamPort), benchSeconds())
	if err != nil {
		b.Fatal(err)
	}
	cpu := cpuTime() - cpu0
	return sample{float64(n) * 8 / time.Since(start).Seconds() / 1e9, float64(cpu.Microseconds()) / (float64(n) / 1e6)}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("BULKHEAD_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// compare measures fw against no firewall in alternating rounds (baseline,
// firewall, baseline, firewall, ...) so that both see the same machine, and
// reports medians: the rate, the rate ratio, and the ratio of CPU cost per
// unit (baseline/firewall, so 1.0 is free and lower is worse), which other
// load on the machine disturbs far less than the wall-clock rate.
func (e *benchEnv) compare(b *testing.B, fw firewall, measure func(*testing.B) sample, unit string) string {
	var rates, ratios, cpuRatios []float64
	for r := 0; r < benchRounds(); r++ {
		e.install(b, firewall{"nofw", 0, "none"})
		base := measure(b)
		e.install(b, fw)
		got := measure(b)
		rates = append(rates, got.rate)
		ratios = append(ratios, got.rate/base.rate)
		cpuRatios = append(cpuRatios, base.cpuUS/got.cpuUS)
	}
	rate, ratio, cpuRatio := median(rates), median(ratios), median(cpuRatios)
	b.ReportMetric(rate, unit)
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(cpuRatio, "cpu-ratio")
	b.ReportMetric(0, "ns/op")
	return fmt.Sprintf("%-22s %10.2f %-7s ratio %5.1f%%  cpu-ratio %5.1f%%  (ratios %.3f)", fw.name, rate, unit, 100*ratio, 100*cpuRatio, ratios)
}

// BenchmarkForward: new TCP connections per second through one host with
// conntrack alone (the floor of any stateful firewall), with 1k/10k/100k rules in Bulkhead's maps and with the same rules as a linear
// iptables-legacy chain, each against no firewall; then one long flow's
// throughput with 100k rules against none. BULKHEAD_BENCH_ROUNDS (default 3)
// sets the number of alternating rounds per configuration.
func BenchmarkForward(b *testing.B) {
	e := newBenchEnv(b)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average at start: %s", strings.TrimSpace(string(load)))
	}
	var summary []string
	for _, fw := range []firewall{
		{"conntrack-only", 0, "conntrack"},
		{"nft-1k", 1000, "nft"}, {"nft-10k", 10000, "nft"}, {"nft-100k", 100000, "nft"},
		{"iptables-legacy-1k", 1000, "iptables-legacy"}, {"iptables-legacy-10k", 10000, "iptables-legacy"},
		{"iptables-legacy-100k", 100000, "iptables-legacy"},
	} {
		b.Run("conns/"+fw.name, func(b *testing.B) {
			summary = append(summary, "conns  "+e.compare(b, fw, e.connRate, "conns/s"))
		})
	}
	b.Run("stream/nft-100k", func(b *testing.B) {
		summary = append(summary, "stream "+e.compare(b, firewall{"nft-100k", 100000, "nft"}, e.streamRate, "Gbit/s"))
	})
	b.Log("\n" + strings.Join(summary, "\n"))
}

// BenchmarkApply: compile and apply 100k rules in one batch (full), and
// apply a one-member group change (an address moving between two
// identities) as an incremental batch on top of them.
func BenchmarkApply(b *testing.B) {
	e := newBenchEnv(b)
	st, _ := benchPolicy(100000, e.client, e.server)
	b.Run("full-100k", func(b *testing.B) {
		var compile, kernel, standby time.Duration
		for i := 0; i < b.N; i++ {
			// A fresh Table has nothing to reuse: compile from scratch.
			tb, err := New(Config{NetNS: e.host.NS.Fd()})
			if err != nil {
				b.Fatal(err)
			}
			s, err := tb.ApplyFull(st)
			if err != nil || s.StandbyErr != nil {
				b.Fatal(err, s.StandbyErr)
			}
			compile += s.Compile
			kernel += s.Kernel
			standby += s.Standby
		}
		// compile+kernel is the time until the revision decides; the
		// standby batch (filling the other version) follows it.
		b.ReportMetric(float64(compile.Microseconds())/1e3/float64(b.N), "compile-ms/op")
		b.ReportMetric(float64(kernel.Microseconds())/1e3/float64(b.N), "kernel-ms/op")
		b.ReportMetric(float64((compile+kernel).Microseconds())/1e3/float64(b.N), "enforced-ms/op")
		b.ReportMetric(float64(standby.Microseconds())/1e3/float64(b.N), "standby-ms/op")
	})
	// A full apply on a table that holds what it applied: the standby
	// version rebuilt, the forward chain turned to it, the other rebuilt.
	b.Run("full-rebuild-100k", func(b *testing.B) {
		if _, err := e.table.ApplyFull(st); err != nil {
			b.Fatal(err)
		}
		var kernel, standby time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s, err := e.table.ApplyFull(st)
			if err != nil || s.StandbyErr != nil {
				b.Fatal(err, s.StandbyErr)
			}
			kernel += s.Kernel
			standby += s.Standby
		}
		b.ReportMetric(float64(kernel.Microseconds())/1e3/float64(b.N), "kernel-ms/op")
		b.ReportMetric(float64(standby.Microseconds())/1e3/float64(b.N), "standby-ms/op")
	})
	b.Run("incremental-member", func(b *testing.B) {
		if _, err := e.table.ApplyFull(st); err != nil {
			b.Fatal(err)
		}
		// Each iteration one more address changes groups: peer i's
		// address takes peer i+1's identity. Nothing else changes.
		cur := *st
		cur.Identities = append([]IdentityRange(nil), st.Identities...)
		index := map[Identity]int{}
		for i, r := range cur.Identities {
			index[r.Identity] = i
		}
		var elems int
		var compile, kernel time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			next := cur
			next.Identities = append([]IdentityRange(nil), cur.Identities...)
			next.Identities[index[Identity(2000+i)]].Identity = Identity(2000 + i + 1)
			next.Revision = uint64(1000 + i)
			s, err := e.table.ApplyIncremental(&next)
			if err != nil {
				b.Fatal(err)
			}
			cur = next
			elems += s.Added + s.Deleted
			compile += s.Compile
			kernel += s.Kernel
		}
		b.ReportMetric(float64(elems)/float64(b.N), "elements/op")
		b.ReportMetric(float64(compile.Microseconds())/1e3/float64(b.N), "compile-ms/op")
		b.ReportMetric(float64(kernel.Microseconds())/1e3/float64(b.N), "kernel-ms/op")
	})
}

// BenchmarkCompile: the user-space half of a full apply, without a kernel.
func BenchmarkCompile(b *testing.B) {
	client := &netlab.Workload{Name: "client", Interface: "bhwclient", IPv4: netip.MustParseAddr("10.1.0.1")}
	server := &netlab.Workload{Name: "server", Interface: "bhwserver", IPv4: netip.MustParseAddr("10.1.0.2")}
	st, _ := benchPolicy(100000, client, server)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := compile(st, nil); err != nil {
			b.Fatal(err)
		}
	}
}
