package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Layout (all names carry the topology prefix, e.g. "bhT1234"):
//
//	bhT1234-ul           underlay namespace: bridge "br0"; one port "ul-<host>" per host
//	bhT1234-<host>       host namespace: "ul0" (veth to the underlay bridge),
//	                     "bhw<workload>" (host side of each workload veth);
//	                     forwarding on, conntrack acct and timestamps on,
//	                     ICMP error rate limits off (so every reject is seen)
//	bhT1234-<host>-<wl>  workload namespace: "eth0" (workload side of its veth)
//
// The underlay is a bridge in its own namespace rather than a mesh of veth
// pairs so that adding a host is one veth, whatever the number of hosts, and
// the hosts share one L2 segment like servers on a ToR switch.
//
// Addressing (host index i, workload index j, both from 1):
//
//	underlay   10.255.0.i/24            fd00:b0:ff::i/64      on ul0
//	workload   10.i.0.j/32              fd00:b0:i::j/128      on eth0
//	gateway    169.254.1.1/32           fe80::1/64            on every bhw* (host side)
//
// Routing is Calico style: the workload has a /32 (/128) and a default route
// via the fixed gateway, which the host answers for on every workload veth;
// the host has a /32 (/128) route to each of its workloads through its veth,
// and a /32 (/128) route to every remote workload via that workload's host's
// underlay address. No workload traffic is bridged on a host: every packet
// between workloads crosses a host's forward path, where policy is enforced.
const (
	// WorkloadIfPrefix starts the host-side name of every workload veth.
	WorkloadIfPrefix = "bhw"
	// UnderlayIf is the host's interface on the underlay.
	UnderlayIf = "ul0"
	// WorkloadIf is the workload's interface.
	WorkloadIf = "eth0"
)

// Gateway addresses a workload routes through; the host owns them on every
// workload veth.
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::1")
)

// Topology is a set of hosts on one underlay, with their workloads. It is safe
// for concurrent use. Close removes everything it made.
type Topology struct {
	Prefix   string
	Underlay *Namespace

	mu        sync.Mutex
	hosts     []*Host
	nss       []*Namespace // every namespace made, in creation order
	closers   []func() error
	closed    bool
	underlayB string
	nextHost  int
}

// Host is a hypervisor: a namespace whose forward path joins its workloads to
// each other and to the underlay.
type Host struct {
	Name       string
	Index      int
	NS         *Namespace
	UnderlayV4 netip.Addr
	UnderlayV6 netip.Addr

	topo      *Topology
	workloads []*Workload
	nextWL    int // last workload index handed out, under topo.mu
}

// Workload is an endpoint in its own namespace behind a host.
type Workload struct {
	Name  string
	Index int
	Host  *Host
	NS    *Namespace
	// Interface is the host-side veth name, in Host.NS: where the host
	// enforces this workload's policy.
	Interface string
	IPv4      netip.Addr
	IPv6      netip.Addr
}

// TestPrefix returns a prefix unlikely to collide with another test binary
// running at the same time: "bhT" and 5 digits from the pid and the clock.
func TestPrefix() string {
	n := (os.Getpid()*7919 + int(time.Now().UnixNano()/1e3)) % 100000
	return "bhT" + strconv.Itoa(n)
}

// New creates the underlay of a topology; add hosts with AddHost. On error,
// anything half-made is removed.
func New(prefix string) (*Topology, error) {
	if prefix == "" || len(prefix) > 40 {
		return nil, fmt.Errorf("netlab: prefix %q: want 1-40 characters", prefix)
	}
	t := &Topology{Prefix: prefix, underlayB: "br0"}
	ul, err := t.newNS(prefix + "-ul")
	if err != nil {
		return nil, err
	}
	t.Underlay = ul
	err = ul.withHandle(func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: t.underlayB}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		return h.LinkSetUp(br)
	})
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("netlab: underlay %s: %w", ul.Name, err)
	}
	return t, nil
}

func (t *Topology) newNS(name string) (*Namespace, error) {
	ns, err := NewNamespace(name)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.nss = append(t.nss, ns)
	t.mu.Unlock()
	// Before any interface exists, so the defaults apply to all of them:
	// no DAD (addresses usable at once), IPv6 on.
	for _, kv := range [][2]string{
		{"net.ipv6.conf.default.accept_dad", "0"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.disable_ipv6", "0"},
	} {
		if err := ns.Sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// Hosts returns the hosts in the order they were added.
func (t *Topology) Hosts() []*Host {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Host(nil), t.hosts...)
}

// Host returns the host of that name, or nil.
func (t *Topology) Host(name string) *Host {
	for _, h := range t.Hosts() {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Workloads returns every workload of every host.
func (t *Topology) Workloads() []*Workload {
	var out []*Workload
	for _, h := range t.Hosts() {
		out = append(out, h.Workloads()...)
	}
	return out
}

// Workloads returns the host's workloads in the order they were added.
func (h *Host) Workloads() []*Workload {
	h.topo.mu.Lock()
	defer h.topo.mu.Unlock()
	return append([]*Workload(nil), h.workloads...)
}

// AddHost creates a host namespace and plugs it into the underlay. name must
// be 1-12 characters (it becomes part of an interface name).
func (t *Topology) AddHost(name string) (*Host, error) {
	if name == "" || len(name) > 12 {
		return nil, fmt.Errorf("netlab: host %q: want 1-12 characters", name)
	}
	t.mu.Lock()
	t.nextHost++
	idx := t.nextHost
	t.mu.Unlock()
	if idx > 250 {
		return nil, fmt.Errorf("netlab: host %q: at most 250 hosts", name)
	}
	ns, err := t.newNS(t.Prefix + "-" + name)
	if err != nil {
		return nil, err
	}
	h := &Host{
		Name: name, Index: idx, NS: ns, topo: t,
		UnderlayV4: netip.AddrFrom4([4]byte{10, 255, 0, byte(idx)}),
		UnderlayV6: v6(0xff, idx),
	}
	if err := h.setup(); err != nil {
		return nil, fmt.Errorf("netlab: host %s: %w", name, err)
	}
	t.mu.Lock()
	t.hosts = append(t.hosts, h)
	var remote []*Workload
	for _, o := range t.hosts {
		if o != h {
			remote = append(remote, o.workloads...)
		}
	}
	t.mu.Unlock()
	for _, w := range remote {
		if err := h.routeVia(w, w.Host); err != nil {
			return nil, fmt.Errorf("netlab: host %s: %w", name, err)
		}
	}
	return h, nil
}

// v6 is fd00:b0:<net>::<host>.
func v6(net, host int) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfd, 0x00
	b[2], b[3] = 0x00, 0xb0
	b[4], b[5] = byte(net>>8), byte(net)
	b[14], b[15] = byte(host>>8), byte(host)
	return netip.AddrFrom16(b)
}

func (h *Host) setup() error {
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
		{"net.netfilter.nf_conntrack_acct", "1"},
		{"net.netfilter.nf_conntrack_timestamp", "1"},
		// A firewall's "reject" answers with ICMP errors, which the
		// kernel rate-limits per destination (about one per second after
		// a burst of six): tests probing many rejected ports from one
		// client would see timeouts instead.
		{"net.ipv4.icmp_ratelimit", "0"},
		{"net.ipv6.icmp.ratelimit", "0"},
		{"net.ipv4.icmp_msgs_per_sec", "100000"},
		{"net.ipv4.icmp_msgs_burst", "10000"},
	} {
		if err := h.NS.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	ul := h.topo.Underlay
	peer := "ul-" + h.Name
	err := h.NS.withHandle(func(nh *netlink.Handle) error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: UnderlayIf},
			PeerName:      peer,
			PeerNamespace: netlink.NsFd(ul.Fd()),
		}
		if err := nh.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s/%s: %w", UnderlayIf, peer, err)
		}
		link, err := nh.LinkByName(UnderlayIf)
		if err != nil {
			return err
		}
		if err := addAddr(nh, link, netip.PrefixFrom(h.UnderlayV4, 24)); err != nil {
			return err
		}
		if err := addAddr(nh, link, netip.PrefixFrom(h.UnderlayV6, 64)); err != nil {
			return err
		}
		return nh.LinkSetUp(link)
	})
	if err != nil {
		return err
	}
	return ul.withHandle(func(uh *netlink.Handle) error {
		link, err := uh.LinkByName(peer)
		if err != nil {
			return err
		}
		br, err := uh.LinkByName(h.topo.underlayB)
		if err != nil {
			return err
		}
		if err := uh.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", peer, h.topo.underlayB, err)
		}
		return uh.LinkSetUp(link)
	})
}

func addAddr(h *netlink.Handle, link netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: ipnet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, link.Attrs().Name, err)
	}
	return nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// WorkloadConfig describes a workload to add. Zero addresses are assigned
// from the host's block (10.<host>.0.<n>, fd00:b0:<host>::<n>).
type WorkloadConfig struct {
	Name string // 1-12 characters
	IPv4 netip.Addr
	IPv6 netip.Addr
}

// AddWorkload creates a workload namespace behind host h, with a veth pair,
// addresses and routes, and makes it reachable from every other host.
func (t *Topology) AddWorkload(h *Host, cfg WorkloadConfig) (*Workload, error) {
	if cfg.Name == "" || len(cfg.Name) > 12 {
		return nil, fmt.Errorf("netlab: workload %q: want 1-12 characters", cfg.Name)
	}
	t.mu.Lock()
	h.nextWL++
	idx := h.nextWL
	t.mu.Unlock()
	w := &Workload{
		Name: cfg.Name, Index: idx, Host: h,
		Interface: WorkloadIfPrefix + cfg.Name,
		IPv4:      cfg.IPv4, IPv6: cfg.IPv6,
	}
	if !w.IPv4.IsValid() {
		if idx > 254 {
			return nil, fmt.Errorf("netlab: workload %s: no more addresses on host %s", cfg.Name, h.Name)
		}
		w.IPv4 = netip.AddrFrom4([4]byte{10, byte(h.Index), 0, byte(idx)})
	}
	if !w.IPv6.IsValid() {
		w.IPv6 = v6(h.Index, idx)
	}
	ns, err := t.newNS(t.Prefix + "-" + h.Name + "-" + cfg.Name)
	if err != nil {
		return nil, err
	}
	w.NS = ns
	if err := w.setup(); err != nil {
		return nil, fmt.Errorf("netlab: workload %s on %s: %w", cfg.Name, h.Name, err)
	}
	t.mu.Lock()
	h.workloads = append(h.workloads, w)
	others := make([]*Host, 0, len(t.hosts))
	for _, o := range t.hosts {
		if o != h {
			others = append(others, o)
		}
	}
	t.mu.Unlock()
	for _, o := range others {
		if err := o.routeVia(w, h); err != nil {
			return nil, fmt.Errorf("netlab: workload %s: %w", cfg.Name, err)
		}
	}
	return w, nil
}

func (w *Workload) setup() error {
	// Let root (the tests) open ICMP echo "ping" sockets without raw sockets.
	if err := w.NS.Sysctl("net.ipv4.ping_group_range", "0 2147483647"); err != nil {
		return err
	}
	h := w.Host
	err := h.NS.withHandle(func(nh *netlink.Handle) error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: w.Interface},
			PeerName:      WorkloadIf,
			PeerNamespace: netlink.NsFd(w.NS.Fd()),
		}
		if err := nh.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", w.Interface, err)
		}
		link, err := nh.LinkByName(w.Interface)
		if err != nil {
			return err
		}
		if err := addAddr(nh, link, netip.PrefixFrom(GatewayV4, 32)); err != nil {
			return err
		}
		if err := addAddr(nh, link, netip.PrefixFrom(GatewayV6, 64)); err != nil {
			return err
		}
		if err := nh.LinkSetUp(link); err != nil {
			return err
		}
		idx := link.Attrs().Index
		for _, a := range []netip.Addr{w.IPv4, w.IPv6} {
			r := &netlink.Route{LinkIndex: idx, Dst: ipnet(netip.PrefixFrom(a, a.BitLen())), Scope: netlink.SCOPE_LINK}
			if a.Is6() {
				r.Scope = netlink.SCOPE_UNIVERSE
			}
			if err := nh.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s dev %s: %w", a, w.Interface, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return w.NS.withHandle(func(wh *netlink.Handle) error {
		link, err := wh.LinkByName(WorkloadIf)
		if err != nil {
			return err
		}
		if err := addAddr(wh, link, netip.PrefixFrom(w.IPv4, 32)); err != nil {
			return err
		}
		if err := addAddr(wh, link, netip.PrefixFrom(w.IPv6, 128)); err != nil {
			return err
		}
		if err := wh.LinkSetUp(link); err != nil {
			return err
		}
		idx := link.Attrs().Index
		routes := []*netlink.Route{
			{LinkIndex: idx, Dst: ipnet(netip.PrefixFrom(GatewayV4, 32)), Scope: netlink.SCOPE_LINK},
			{LinkIndex: idx, Dst: ipnet(netip.MustParsePrefix("0.0.0.0/0")), Gw: GatewayV4.AsSlice()},
			{LinkIndex: idx, Dst: ipnet(netip.MustParsePrefix("::/0")), Gw: GatewayV6.AsSlice()},
		}
		for _, r := range routes {
			if err := wh.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s: %w", r.Dst, err)
			}
		}
		return nil
	})
}

// routeVia makes h route w's addresses to via's underlay address.
func (h *Host) routeVia(w *Workload, via *Host) error {
	return h.NS.withHandle(func(nh *netlink.Handle) error {
		link, err := nh.LinkByName(UnderlayIf)
		if err != nil {
			return err
		}
		for _, p := range [][2]netip.Addr{{w.IPv4, via.UnderlayV4}, {w.IPv6, via.UnderlayV6}} {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipnet(netip.PrefixFrom(p[0], p[0].BitLen())), Gw: p[1].AsSlice()}
			if err := nh.RouteAdd(r); err != nil {
				return fmt.Errorf("host %s: route %s via %s: %w", h.Name, p[0], p[1], err)
			}
		}
		return nil
	})
}

// Workload returns the host's workload of that name, or nil.
func (h *Host) Workload(name string) *Workload {
	for _, w := range h.Workloads() {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// Addr returns the workload's IPv6 address if ipv6, else its IPv4 one.
func (w *Workload) Addr(ipv6 bool) netip.Addr {
	if ipv6 {
		return w.IPv6
	}
	return w.IPv4
}

// onClose registers fn to run at Close, before namespaces are deleted.
func (t *Topology) onClose(fn func() error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closers = append(t.closers, fn)
}

// Close stops every server started through the topology and deletes every
// namespace (and so every interface) it created. It is safe to call twice.
func (t *Topology) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	closers, nss := t.closers, t.nss
	t.mu.Unlock()
	var errs error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = errors.Join(errs, err)
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if err := nss[i].Delete(); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}
