package nft

import "fmt"

// Mark is the conntrack mark Bulkhead writes on every new connection that
// crosses a local workload interface, and the packet mark NFLOG sees on
// dropped and rejected packets:
//
//	bits  0-23  rule id (1 = default rule); 0 = not decided by Bulkhead
//	bits 24-25  action: 1 allow, 2 drop, 3 reject
//	bit  26     log: the deciding rule asked for logging
//	bit  27     point: 0 decided at the source workload's egress,
//	            1 at the destination workload's ingress
//	bit  28     L7 pending: an L7 entry matched at L3/L4 (rule id and
//	            point are that entry's, action 0); the agent's queue
//	            reader decides from the payload and writes the final mark
//	bit  29     (packet mark only) an L7 verdict coming back from the
//	            queue reader: the rest of the mark becomes the ct mark
//	bit  30     (packet mark only, queued packets) the packet goes in
//	            the connection's reply direction
//	bit  31     (policy map data) an FQDN dispatch: bits 0-23 number
//	            the list of FQDN set tests the egress chain makes next
//	            (see fqdn.go); never left in a ct mark by the policy.
//	            In a ct mark: the IDS blocked the connection
//	            (MarkIDSBlock, set by the inspection table after the
//	            policy decided; a packet mark with it is the IDS
//	            reader's block verdict, see ids_chain.go). The policy's
//	            chains never test it, Verdict and the flow collectors'
//	            decoding mask it out.
//
// A decided connection never carries bit 28, so its later packets stay in
// the kernel; one that an L7 verdict dropped keeps its drop mark, and its
// later packets are dropped by the same test that finds pending ones
// (bit 28 or bit 25, the drop/reject bit of the action: no connection the
// kernel dropped at its first packet ever becomes established).
//
// A connection between two workloads of one host carries the dropping
// point's rule, else the ingress rule, else the egress rule, matching the
// evaluator's semantics. Connections that touch no local workload keep
// whatever mark they had (normally 0).
type Mark uint32

// Mark layout.
const (
	MaxRule      = 1<<24 - 1
	markRuleMask = MaxRule
	markActShift = 24
	markActMask  = 3 << markActShift
	markLog      = 1 << 26
	markIngress  = 1 << 27
	// MarkL7Pending, MarkL7Verdict and MarkL7Reply are bits 28, 29, 30.
	MarkL7Pending Mark = 1 << 28
	MarkL7Verdict Mark = 1 << 29
	MarkL7Reply   Mark = 1 << 30
	// markDispatch flags a policy map value that is an FQDN dispatch.
	markDispatch Mark = 1 << 31
	// markDecided masks what a final ct mark may hold.
	markDecided = 1<<28 - 1
)

// MakePendingMark encodes an L7 entry reached at L3/L4: its rule, its point,
// no action yet.
func MakePendingMark(v Verdict, ingress bool) Mark {
	m := Mark(v.Rule&markRuleMask) | MarkL7Pending
	if v.Log {
		m |= markLog
	}
	if ingress {
		m |= markIngress
	}
	return m
}

// Pending reports whether the connection waits for an L7 decision.
func (m Mark) Pending() bool { return m&MarkL7Pending != 0 }

// Decided returns the mark without the L7 bits.
func (m Mark) Decided() Mark { return m & markDecided }

// MakeMark encodes a verdict decided at ingress (or egress).
func MakeMark(v Verdict, ingress bool) Mark {
	m := Mark(v.Rule&markRuleMask) | Mark(v.Action&3)<<markActShift
	if v.Log {
		m |= markLog
	}
	if ingress {
		m |= markIngress
	}
	return m
}

// Rule is the id of the deciding rule.
func (m Mark) Rule() uint32 { return uint32(m) & markRuleMask }

// Action is the decision; 0 if Bulkhead did not decide this connection.
func (m Mark) Action() Action { return Action((uint32(m) & markActMask) >> markActShift) }

// Log reports whether the deciding rule asked for logging.
func (m Mark) Log() bool { return m&markLog != 0 }

// Ingress reports whether the destination's ingress point decided.
func (m Mark) Ingress() bool { return m&markIngress != 0 }

// Verdict decodes the rule, action and log flag.
func (m Mark) Verdict() Verdict { return Verdict{Rule: m.Rule(), Action: m.Action(), Log: m.Log()} }

func (m Mark) String() string {
	if m&markDispatch != 0 {
		return fmt.Sprintf("FQDN dispatch %d", m.Rule())
	}
	if m.Pending() {
		point := "egress"
		if m.Ingress() {
			point = "ingress"
		}
		return fmt.Sprintf("L7 pending rule %d at %s", m.Rule(), point)
	}
	if m.Action() == 0 {
		return fmt.Sprintf("mark(%#x)", uint32(m))
	}
	point := "egress"
	if m.Ingress() {
		point = "ingress"
	}
	s := fmt.Sprintf("%s rule %d at %s", m.Action(), m.Rule(), point)
	if m.Log() {
		s += " log"
	}
	return s
}
