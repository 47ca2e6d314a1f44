package dnssnoop

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// CaptureConfig describes the nftables table that copies DNS answers to an
// NFLOG group. Zero values take the defaults.
type CaptureConfig struct {
	// NetNS is a descriptor of the network namespace to work in; 0 means
	// the caller's.
	NetNS int
	// Table is the inet table this package owns there. Default
	// "bulkhead_dns".
	Table string
	// Group is the NFLOG group. Default 101.
	Group uint16
	// SnapLen bounds the bytes copied per packet; the kernel copies no more
	// than the packet, so a large bound costs nothing. Default 65535.
	SnapLen uint32
	// OutIfPrefix limits the forward hook to answers leaving through an
	// interface whose name starts with it (the workload veths, "bhw"); empty
	// logs every forwarded answer.
	OutIfPrefix string
	// Local also logs answers delivered to the namespace itself (input
	// hook), for a snooper that runs in the workload's own namespace.
	Local bool
	// Priority of the hooks; default -150, before the data plane's filter
	// (0), so an answer is seen whatever the policy does with it.
	Priority int32
	// RepliesOnly logs only packets in the reply direction of a connection
	// conntrack tracks: answers to a query the workload sent. With a
	// priority after the data plane's filter, it also takes only answers
	// the policy let through. A packet from port 53 that answers no query
	// (another workload posing as a resolver) is then never believed.
	RepliesOnly bool
}

// Capture defaults.
const (
	DefaultCaptureTable = "bulkhead_dns"
	DefaultGroup        = 101
	DefaultSnapLen      = 65535
	DefaultPriority     = -150
)

func (c CaptureConfig) withDefaults() CaptureConfig {
	if c.Table == "" {
		c.Table = DefaultCaptureTable
	}
	if c.Group == 0 {
		c.Group = DefaultGroup
	}
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	return c
}

func (c CaptureConfig) validate() error {
	switch {
	case c.NetNS < 0:
		return fmt.Errorf("dnssnoop: capture: netns fd %d: invalid", c.NetNS)
	case len(c.Table) > 255 || strings.ContainsRune(c.Table, 0):
		return fmt.Errorf("dnssnoop: capture: table %q: invalid name", c.Table)
	case len(c.OutIfPrefix) > 15:
		return fmt.Errorf("dnssnoop: capture: interface prefix %q: longer than an interface name", c.OutIfPrefix)
	}
	return nil
}

func dial(netns int) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return c, nil
}

// InstallCapture creates (or replaces, in one batch) the capture table: for
// UDP and TCP from port 53, a copy of the packet to the NFLOG group, sent
// to user space at once (queue threshold 1).
func InstallCapture(cfg CaptureConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	c, err := dial(cfg.NetNS)
	if err != nil {
		return fmt.Errorf("dnssnoop: capture table %s: %w", cfg.Table, err)
	}
	defer c.CloseLasting()
	tbl := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	// add + delete + add: replaces the table whether or not it exists.
	c.AddTable(tbl)
	c.DelTable(tbl)
	c.AddTable(tbl)
	policy := nftables.ChainPolicyAccept
	hook := func(name string, num *nftables.ChainHook, ifKey expr.MetaKey, prefix string) {
		ch := c.AddChain(&nftables.Chain{
			Name: name, Table: tbl, Type: nftables.ChainTypeFilter, Hooknum: num,
			Priority: nftables.ChainPriorityRef(nftables.ChainPriority(cfg.Priority)), Policy: &policy,
		})
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			exprs := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 53}},
			}
			if cfg.RepliesOnly {
				exprs = append(exprs,
					&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}}) // IP_CT_DIR_REPLY
			}
			if prefix != "" {
				// Comparing only the prefix's bytes is nft's "bhw*".
				exprs = append(exprs,
					&expr.Meta{Key: ifKey, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)})
			}
			exprs = append(exprs, &expr.Log{
				Key:        1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN | 1<<unix.NFTA_LOG_QTHRESHOLD,
				Group:      cfg.Group,
				Snaplen:    cfg.SnapLen,
				QThreshold: 1,
			})
			c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: exprs})
		}
	}
	hook("forward", nftables.ChainHookForward, expr.MetaKeyOIFNAME, cfg.OutIfPrefix)
	if cfg.Local {
		hook("input", nftables.ChainHookInput, expr.MetaKeyIIFNAME, "")
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("dnssnoop: capture table %s: %w", cfg.Table, err)
	}
	return nil
}

// RemoveCapture deletes the capture table; a missing table is not an error.
func RemoveCapture(cfg CaptureConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	c, err := dial(cfg.NetNS)
	if err != nil {
		return fmt.Errorf("dnssnoop: capture table %s: %w", cfg.Table, err)
	}
	defer c.CloseLasting()
	c.DelTable(&nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("dnssnoop: remove capture table %s: %w", cfg.Table, err)
	}
	return nil
}
