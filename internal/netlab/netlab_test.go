package netlab

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to create network namespaces")
	}
}

// newTopo builds hosts h1..hN with the given number of workloads each
// (w1, w2, ...) and removes everything when the test ends.
func newTopo(t testing.TB, hosts, workloads int) *Topology {
	t.Helper()
	needRoot(t)
	topo, err := New(TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	for i := 1; i <= hosts; i++ {
		h, err := topo.AddHost("h" + itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		for j := 1; j <= workloads; j++ {
			if _, err := topo.AddWorkload(h, WorkloadConfig{Name: "w" + itoa(j)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return topo
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestTopologyConnectivity(t *testing.T) {
	topo := newTopo(t, 2, 2)
	const port = 7000
	for _, w := range topo.Workloads() {
		if _, err := w.Serve(port); err != nil {
			t.Fatal(err)
		}
	}
	all := topo.Workloads()
	for _, src := range all {
		for _, dst := range all {
			if src == dst {
				continue
			}
			for _, v6 := range []bool{false, true} {
				addr := dst.Addr(v6)
				name := src.Host.Name + "/" + src.Name + "->" + dst.Host.Name + "/" + dst.Name + " " + addr.String()
				if o, err := src.ProbeTCP(netip.AddrPortFrom(addr, port), 2*time.Second); err != nil || o != Open {
					t.Errorf("%s tcp: %v %v", name, o, err)
				}
				if o, err := src.ProbeUDP(netip.AddrPortFrom(addr, port), 2*time.Second); err != nil || o != Open {
					t.Errorf("%s udp: %v %v", name, o, err)
				}
				if o, err := src.ProbeICMP(addr, 2*time.Second); err != nil || o != Open {
					t.Errorf("%s icmp: %v %v", name, o, err)
				}
			}
		}
	}
	// A closed port is refused, not timed out: the client-side outcomes the
	// firewall tests rely on are told apart.
	w1, w2 := all[0], all[1]
	if o, err := w1.ProbeTCP(netip.AddrPortFrom(w2.IPv4, port+1), 2*time.Second); err != nil || o != Refused {
		t.Errorf("closed tcp port: %v %v, want refused", o, err)
	}
	if o, err := w1.ProbeUDP(netip.AddrPortFrom(w2.IPv6, port+1), 2*time.Second); err != nil || o != Refused {
		t.Errorf("closed udp port: %v %v, want refused", o, err)
	}
}

func TestHostSysctls(t *testing.T) {
	topo := newTopo(t, 1, 1)
	h := topo.Hosts()[0]
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":                  "1",
		"net.ipv6.conf.all.forwarding":         "1",
		"net.netfilter.nf_conntrack_acct":      "1",
		"net.netfilter.nf_conntrack_timestamp": "1",
	} {
		got, err := h.NS.ReadSysctl(key)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	// The host's own sysctls are untouched: Sysctl wrote inside the namespace.
	out, err := h.NS.Exec(context.Background(), "ip", "-br", "link")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{UnderlayIf, WorkloadIfPrefix + "w1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("host links %q lack %s", out, want)
		}
	}
}

func TestConnectLoop(t *testing.T) {
	topo := newTopo(t, 1, 2)
	ws := topo.Workloads()
	if err := ws[1].ServeGreeter(7000, 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := ws[0].ConnectLoop(ctx, netip.AddrPortFrom(ws[1].IPv6, 7000), 2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.OK == 0 || st.Failed != 0 {
		t.Errorf("connect loop: %+v", st)
	}
	t.Logf("%d connections in 300ms", st.OK)
}

func TestCloseAndCleanupPrefix(t *testing.T) {
	needRoot(t)
	prefix := TestPrefix()
	topo, err := New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CleanupPrefix(prefix) })
	h, err := topo.AddHost("h1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.AddWorkload(h, WorkloadConfig{Name: "w1"}); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: forget the topology, clean up by prefix.
	deleted, err := CleanupPrefix(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 3 {
		t.Errorf("cleanup deleted %v, want 3 namespaces", deleted)
	}
	left, _ := filepath.Glob(filepath.Join(RunDir, prefix+"*"))
	if len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	// Close after a cleanup must not fail on the missing namespaces.
	if err := topo.Close(); err != nil {
		t.Errorf("close after cleanup: %v", err)
	}
}

// BenchmarkConnectRate measures new TCP connections/s through one host's
// forward path with nothing in it: the raw speed of the lab itself.
func BenchmarkConnectRate(b *testing.B) {
	topo := newTopo(b, 1, 2)
	ws := topo.Workloads()
	if _, err := ws[1].Serve(7000); err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 2, 4, 8} {
		b.Run("workers="+itoa(workers), func(b *testing.B) {
			var total int64
			start := time.Now()
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				st, err := ws[0].ConnectLoop(ctx, netip.AddrPortFrom(ws[1].IPv4, 7000), workers, time.Second)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				total += st.OK
			}
			b.ReportMetric(float64(total)/time.Since(start).Seconds(), "conns/s")
		})
	}
}
