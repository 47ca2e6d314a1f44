package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

// Discovery finds a host's workload interfaces through netlink and follows
// their changes.
//
// An interface is a workload interface when its name matches Pattern and,
// if Bridge is set, it is a port of that bridge. A workload's addresses are
// not the interface's own (the host side of a veth holds at most a gateway
// address): on a routed host they are the destinations of host routes
// (/32, /128) through the interface; on a bridged host, the neighbours the
// bridge learnt whose MAC the bridge forwards to that port.
type Discovery struct {
	Pattern string
	Bridge  string
	// NetNS is the path of the namespace to look into; "" is the
	// caller's own.
	NetNS string
	// Resync is how often to rescan without any event; 0 never.
	Resync time.Duration
}

// debounce collects a burst of netlink events (an interface, its address
// and its route arrive together) into one scan.
const debounce = 100 * time.Millisecond

// Run reports the interfaces found to report, now and after every change,
// until ctx is done or netlink fails.
func (d *Discovery) Run(ctx context.Context, report func([]*agentapi.Interface)) error {
	if _, err := path.Match(d.Pattern, ""); err != nil {
		return fmt.Errorf("discovery: pattern %q: %w", d.Pattern, err)
	}
	var (
		nsh *netns.NsHandle // nil: the subscriptions' own namespace
		h   *netlink.Handle
		err error
	)
	if d.NetNS != "" {
		ns, err := netns.GetFromPath(d.NetNS)
		if err != nil {
			return fmt.Errorf("discovery: netns %s: %w", d.NetNS, err)
		}
		defer ns.Close()
		nsh = &ns
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return fmt.Errorf("discovery: netlink in %s: %w", d.NetNS, err)
		}
	} else if h, err = netlink.NewHandle(); err != nil {
		return fmt.Errorf("discovery: netlink: %w", err)
	}
	defer h.Close()

	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 4)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	neighs := make(chan netlink.NeighUpdate, 64)
	// Subscribe before the first scan, so nothing changes unseen.
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: nsh, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("discovery: subscribe to links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: nsh, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("discovery: subscribe to addresses: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: nsh, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("discovery: subscribe to routes: %w", err)
	}
	if d.Bridge != "" {
		if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{Namespace: nsh, ErrorCallback: onErr}); err != nil {
			return fmt.Errorf("discovery: subscribe to neighbours: %w", err)
		}
	}

	var last []*agentapi.Interface
	first := true
	scan := func() error {
		found, err := d.Scan(h)
		if err != nil {
			return err
		}
		if first || !sameInterfaces(found, last) {
			first = false
			last = found
			report(found)
		}
		return nil
	}
	if err := scan(); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var resync <-chan time.Time
	if d.Resync > 0 {
		t := time.NewTicker(d.Resync)
		defer t.Stop()
		resync = t.C
	}
	closed := errors.New("discovery: netlink subscription closed")
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("discovery: netlink: %w", err)
		case _, ok := <-links:
			if !ok {
				return closed
			}
			timer.Reset(debounce)
		case _, ok := <-addrs:
			if !ok {
				return closed
			}
			timer.Reset(debounce)
		case _, ok := <-routes:
			if !ok {
				return closed
			}
			timer.Reset(debounce)
		case _, ok := <-neighs:
			if !ok {
				return closed
			}
			timer.Reset(debounce)
		case <-timer.C:
			if err := scan(); err != nil {
				return err
			}
		case <-resync:
			if err := scan(); err != nil {
				return err
			}
		}
	}
}

// Scan lists the workload interfaces once, sorted by name.
func (d *Discovery) Scan(h *netlink.Handle) ([]*agentapi.Interface, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("discovery: list links: %w", err)
	}
	bridge := -1
	if d.Bridge != "" {
		for _, l := range links {
			if l.Attrs().Name == d.Bridge {
				bridge = l.Attrs().Index
			}
		}
		if bridge < 0 {
			return nil, nil // no bridge yet: no workloads on it
		}
	}
	byIndex := map[int]*agentapi.Interface{}
	var out []*agentapi.Interface
	for _, l := range links {
		a := l.Attrs()
		if ok, _ := path.Match(d.Pattern, a.Name); !ok {
			continue
		}
		if bridge >= 0 && a.MasterIndex != bridge {
			continue
		}
		ifc := &agentapi.Interface{Name: a.Name, Kind: linkKind(l)}
		if len(a.HardwareAddr) > 0 {
			ifc.Mac = a.HardwareAddr.String()
		}
		byIndex[a.Index] = ifc
		out = append(out, ifc)
	}
	if len(out) == 0 {
		return nil, nil
	}
	ips := map[*agentapi.Interface][]netip.Addr{}
	if bridge < 0 {
		routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, 0)
		if err != nil {
			return nil, fmt.Errorf("discovery: list routes: %w", err)
		}
		for _, r := range routes {
			ifc := byIndex[r.LinkIndex]
			if ifc == nil || r.Dst == nil {
				continue
			}
			if ones, bits := r.Dst.Mask.Size(); ones != bits {
				continue
			}
			if a, ok := workloadAddr(r.Dst.IP); ok {
				ips[ifc] = append(ips[ifc], a)
			}
		}
	} else {
		// The bridge forwards to a port the MACs in its forwarding
		// database; the neighbour table maps addresses to MACs.
		fdb, err := h.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			return nil, fmt.Errorf("discovery: list bridge fdb: %w", err)
		}
		port := map[string]*agentapi.Interface{}
		for _, n := range fdb {
			if ifc := byIndex[n.LinkIndex]; ifc != nil && len(n.HardwareAddr) > 0 {
				port[n.HardwareAddr.String()] = ifc
			}
		}
		neighs, err := h.NeighList(bridge, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("discovery: list neighbours of %s: %w", d.Bridge, err)
		}
		for _, n := range neighs {
			if n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE|netlink.NUD_NONE) != 0 || len(n.HardwareAddr) == 0 {
				continue
			}
			ifc := port[n.HardwareAddr.String()]
			if ifc == nil {
				continue
			}
			if a, ok := workloadAddr(n.IP); ok {
				ips[ifc] = append(ips[ifc], a)
			}
		}
	}
	for _, ifc := range out {
		as := ips[ifc]
		slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
		as = slices.Compact(as)
		for _, a := range as {
			ifc.Ips = append(ifc.Ips, a.String())
		}
	}
	slices.SortFunc(out, func(a, b *agentapi.Interface) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// workloadAddr keeps the addresses a policy can name: not link-local, not
// multicast, not unspecified.
func workloadAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLoopback() {
		return netip.Addr{}, false
	}
	return a, true
}

func linkKind(l netlink.Link) agentapi.InterfaceKind {
	switch t := l.(type) {
	case *netlink.Veth:
		return agentapi.InterfaceKind_INTERFACE_KIND_VETH
	case *netlink.Tuntap:
		if t.Mode == netlink.TUNTAP_MODE_TAP {
			return agentapi.InterfaceKind_INTERFACE_KIND_TAP
		}
	}
	switch l.Type() {
	case "veth":
		return agentapi.InterfaceKind_INTERFACE_KIND_VETH
	case "tap":
		return agentapi.InterfaceKind_INTERFACE_KIND_TAP
	}
	return agentapi.InterfaceKind_INTERFACE_KIND_OTHER
}

func sameInterfaces(a, b []*agentapi.Interface) bool {
	return slices.EqualFunc(a, b, func(x, y *agentapi.Interface) bool { return proto.Equal(x, y) })
}

// discoverLoop runs discovery for the agent, restarting it after netlink
// errors, until ctx is done.
func (a *Agent) discoverLoop(ctx context.Context) {
	d := &Discovery{Pattern: a.cfg.IfacePattern, Bridge: a.cfg.Bridge, NetNS: a.cfg.NetNS, Resync: a.cfg.Resync}
	bo := newBackoff(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for {
		err := d.Run(ctx, func(ifaces []*agentapi.Interface) {
			a.log.Debug("workload interfaces", "count", len(ifaces))
			a.inv.set(ifaces)
			a.indexWorkloads()
			bo.reset()
		})
		if ctx.Err() != nil {
			return
		}
		wait := bo.next()
		a.log.Error("workload discovery failed; retrying", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return
		}
	}
}
