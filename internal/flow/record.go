// Package flow turns what one host's kernel knows about connections into flow
// records for the manager: conntrack events and periodic dumps become flow
// updates and ends, NFLOG'd packets become drop records aggregated over a
// window, and a bounded buffer and a batching loop carry them to a Sender.
//
// It runs in the agent and must not import the manager, the stores or SQL.
package flow

import (
	"fmt"
	"net/netip"
	"time"
)

// Kind says what a record reports.
type Kind uint8

const (
	// KindUpdate is an open flow; its counters are totals since Start, as
	// read at Seen. A long flow has one per dump interval while it moves.
	KindUpdate Kind = 1
	// KindEnd is a closed flow with its final totals. It carries the same
	// ID as the updates before it.
	KindEnd Kind = 2
	// KindDrop is denied packets of one (source, destination, protocol,
	// destination port or ICMP type/code, rule) seen within one
	// aggregation window; SrcPackets counts them.
	KindDrop Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindUpdate:
		return "update"
	case KindEnd:
		return "end"
	case KindDrop:
		return "drop"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for k := KindUpdate; k <= KindDrop; k++ {
		if s == k.String() {
			return k, nil
		}
	}
	return 0, fmt.Errorf("flow kind %q: want update, end or drop", s)
}

// Verdict is what the deciding rule did. The values are those of the action
// bits of the conntrack mark, so a mark decoder can convert directly.
type Verdict uint8

const (
	Allow  Verdict = 1
	Drop   Verdict = 2
	Reject Verdict = 3
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Drop:
		return "drop"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// ParseVerdict is the inverse of Verdict.String.
func ParseVerdict(s string) (Verdict, error) {
	for v := Allow; v <= Reject; v++ {
		if s == v.String() {
			return v, nil
		}
	}
	return 0, fmt.Errorf("verdict %q: want allow, drop or reject", s)
}

// MarkDecoder reads the deciding rule and verdict out of a conntrack or
// packet mark. Rule 0 means Bulkhead did not decide this connection. The
// caller passes the data plane's decoder, so this package does not fix the
// mark layout.
type MarkDecoder func(mark uint32) (rule uint32, v Verdict)

// Record is one flow record, as the agent sends it and the manager stores
// it.
//
// Counters are totals, never deltas: an update says "so far", the end says
// "in all". The manager merges the records of one ID by keeping the largest
// counters, which makes a resent batch harmless and can never double count.
type Record struct {
	// ID is the same for every update and the end of one connection:
	// host, conntrack id and start time. Drop records have their own IDs.
	ID   string
	Kind Kind
	Host string

	Src, Dst netip.Addr
	Proto    uint8
	// SrcPort is 0 in a drop record whose packets came from several ports.
	SrcPort, DstPort   uint16
	ICMPType, ICMPCode uint8 // ICMP and ICMPv6 only

	// Workload names of the ends that are workloads on this host.
	SrcWorkload, DstWorkload string

	// Bytes (IP lengths) and packets sent by the source and by the
	// destination.
	SrcBytes, SrcPackets uint64
	DstBytes, DstPackets uint64

	Start time.Time
	End   time.Time // zero while the flow is open
	// Seen is when the counters were read: the dump time of an update, the
	// end of a flow, the last packet of a drop record.
	Seen time.Time

	RuleID  uint32
	Verdict Verdict
	// StagedRuleID is the rule that would decide the flow if staged rules
	// were enforced, when that differs from RuleID; 0 otherwise. Staged
	// rules are not in the kernel: the manager fills this from the
	// evaluator at ingest, which is how staged rules are counted.
	StagedRuleID uint32

	// Mirror marks a second view of a connection: every agent host a
	// connection crosses reports it, and only the record of its primary
	// host (the source workload's, else the destination's) counts in the
	// analyses. The manager sets it at ingest.
	Mirror bool

	// User is the directory user behind the connection's source (address
	// and source port) when it started, from login sessions. The manager
	// sets it at ingest; the agent never does.
	User string

	// What the agent's L7 reader learned from the connection's first
	// payload packets: the application (a dpi AppID such as "APP_SSH"),
	// the TLS version ("1.3") and the server name (TLS SNI, HTTP Host
	// or the DNS question). Empty for connections that no L7 rule
	// concerned, since only those are inspected, and for imports.
	App, TLSVersion, ServerName string
}

// Unanswered reports whether the record is an attempt the destination never
// answered: dropped or rejected, a TCP connection refused (nothing back but
// one reset) or not answered at all, a UDP or ICMP probe with no reply. A
// record without packet counters (an import that lacks them) is not.
// Nothing listened, so such a record says nothing about a service.
func (r *Record) Unanswered() bool {
	if r.Kind == KindDrop || r.Verdict == Drop || r.Verdict == Reject {
		return true
	}
	if r.SrcPackets == 0 {
		return false
	}
	if r.Proto == protoTCP && r.DstPackets == 1 {
		// One packet back: a reset carries no TCP options, so it is a
		// bare header (40 bytes over IPv4, 60 over IPv6); a SYN-ACK
		// from Linux carries options and is longer.
		bare := uint64(40)
		if r.Dst.Is6() && !r.Dst.Is4In6() {
			bare = 60
		}
		return r.DstBytes <= bare
	}
	return r.DstPackets == 0
}

// IsICMP reports whether the record's protocol is ICMP or ICMPv6.
func (r *Record) IsICMP() bool { return r.Proto == protoICMP || r.Proto == protoICMPv6 }

// ConnID is the ID of a conntrack connection's records. The kernel reuses
// conntrack ids, so the start time is part of it. Start comes first, in
// fixed width, so that one host's new IDs sort after its older ones: the
// manager's index then grows at one end instead of everywhere.
func ConnID(host string, ctID uint32, start time.Time) string {
	return fmt.Sprintf("%s/%016x/%08x", host, start.UnixNano(), ctID)
}

// Protocol numbers the package cares about.
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoICMPv6  = 58
	protoSCTP    = 132
	protoUDPLite = 136
)
