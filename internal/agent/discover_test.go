package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): creates a network namespace with veth pairs")
	}
}

// newNetns makes a named network namespace (as 'ip netns add' would) and
// returns a handle on it and its path; the test's thread stays where it was.
func newNetns(t *testing.T) (*netlink.Handle, string) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	name := fmt.Sprintf("bhagent%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the original netns: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, "/var/run/netns/" + name
}

func mustCIDR(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// addVeth makes a veth pair whose first end is a routed workload
// interface: the gateway address on it, host routes to ips through it.
func addVeth(t *testing.T, h *netlink.Handle, name, peer string, ips ...string) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []netlink.Link{l, p} {
		if err := h.LinkSetUp(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: mustCIDR("169.254.1.1/32")}); err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips {
		bits := "/32"
		if strings.Contains(ip, ":") {
			bits = "/128"
		}
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: mustCIDR(ip + bits), Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatalf("route %s dev %s: %v", ip, name, err)
		}
	}
	return l
}

func describe(ifs []*agentapi.Interface) string {
	var parts []string
	for _, i := range ifs {
		parts = append(parts, fmt.Sprintf("%s%v/%s", i.Name, i.Ips, kindName(i.Kind)))
	}
	return strings.Join(parts, " ")
}

func kindName(k agentapi.InterfaceKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "INTERFACE_KIND_"))
}

func TestDiscoveryInNetns(t *testing.T) {
	needRoot(t)
	h, path := newNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(chan []*agentapi.Interface, 100)
	d := &Discovery{Pattern: "bhw*", NetNS: path}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, func(ifs []*agentapi.Interface) { reports <- ifs }) }()
	// next waits for the report that describe()s as want.
	next := func(want string) []*agentapi.Interface {
		t.Helper()
		deadline := time.After(10 * time.Second)
		var last string
		for {
			select {
			case ifs := <-reports:
				if last = describe(ifs); last == want {
					return ifs
				}
			case err := <-errc:
				t.Fatalf("discovery stopped: %v", err)
			case <-deadline:
				t.Fatalf("no report %q; last was %q", want, last)
			}
		}
	}
	next("") // nothing yet, and said so

	l1 := addVeth(t, h, "bhw1", "wl1", "10.99.0.1", "fd00:99::1")
	ifs := next("bhw1[10.99.0.1 fd00:99::1]/veth")
	if ifs[0].Mac != l1.Attrs().HardwareAddr.String() || ifs[0].Mac == "" {
		t.Errorf("mac %q, want %s", ifs[0].Mac, l1.Attrs().HardwareAddr)
	}
	addVeth(t, h, "uplink0", "up0", "10.99.9.9") // not a workload interface
	addVeth(t, h, "bhw2", "wl2", "10.99.0.2")
	next("bhw1[10.99.0.1 fd00:99::1]/veth bhw2[10.99.0.2]/veth")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l1.Attrs().Index, Dst: mustCIDR("10.99.0.11/32"), Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	next("bhw1[10.99.0.1 10.99.0.11 fd00:99::1]/veth bhw2[10.99.0.2]/veth")
	if err := h.LinkDel(l1); err != nil {
		t.Fatal(err)
	}
	next("bhw2[10.99.0.2]/veth")

	// Bridged: only ports of the bridge count, with the addresses of the
	// neighbours whose MAC the bridge forwards to them.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-wl"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	brl, _ := h.LinkByName("br-wl")
	h.LinkSetUp(brl)
	port := addVeth(t, h, "bhw3", "wl3")
	if err := h.LinkSetMaster(port, brl); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:42:0a:63:01:03")
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: port.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER,
		State: netlink.NUD_NOARP | netlink.NUD_PERMANENT, HardwareAddr: mac}); err != nil {
		t.Fatalf("fdb entry: %v", err)
	}
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: brl.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.99.1.3"), HardwareAddr: mac}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}
	bd := &Discovery{Pattern: "bhw*", Bridge: "br-wl", NetNS: path}
	got, err := bd.Scan(h)
	if err != nil {
		t.Fatal(err)
	}
	if s := describe(got); s != "bhw3[10.99.1.3]/veth" {
		t.Errorf("bridged scan: %q", s)
	}
	if slices.ContainsFunc(got, func(i *agentapi.Interface) bool { return i.Name == "bhw2" }) {
		t.Error("a routed interface counted in bridge mode")
	}
}
