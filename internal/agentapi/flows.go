package agentapi

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// The one place where flow records cross the wire: flow.Record (what the
// agent's collectors make and the manager's flow store keeps) to and from
// FlowRecord. The enums share their numbers with internal/flow, so that a
// value added on one side and not the other is refused, not mistranslated.

// NewFlowRecord converts a flow record for the wire. The host is not sent:
// the manager takes it from the sender's certificate.
func NewFlowRecord(r *flow.Record) *FlowRecord {
	return &FlowRecord{
		Id:             r.ID,
		Kind:           FlowKind(r.Kind),
		SrcIp:          addrBytes(r.Src),
		DstIp:          addrBytes(r.Dst),
		Protocol:       uint32(r.Proto),
		SrcPort:        uint32(r.SrcPort),
		DstPort:        uint32(r.DstPort),
		IcmpType:       uint32(r.ICMPType),
		IcmpCode:       uint32(r.ICMPCode),
		SrcWorkload:    r.SrcWorkload,
		DstWorkload:    r.DstWorkload,
		BytesOrig:      r.SrcBytes,
		PacketsOrig:    r.SrcPackets,
		BytesReply:     r.DstBytes,
		PacketsReply:   r.DstPackets,
		StartUnixNanos: unixNanos(r.Start),
		EndUnixNanos:   unixNanos(r.End),
		SeenUnixNanos:  unixNanos(r.Seen),
		RuleId:         r.RuleID,
		Verdict:        Verdict(r.Verdict),
		App:            r.App,
		TlsVersion:     r.TLSVersion,
		ServerName:     r.ServerName,
	}
}

// NewFlowBatch converts records for one SendFlows; dropped is how many
// records the agent discarded since its previous batch.
func NewFlowBatch(recs []flow.Record, dropped uint64) *FlowBatch {
	b := &FlowBatch{Records: make([]*FlowRecord, len(recs)), Dropped: dropped}
	for i := range recs {
		b.Records[i] = NewFlowRecord(&recs[i])
	}
	return b
}

// Record converts a received record back, with host as its Host. It
// refuses what flow.Record cannot hold: addresses that are not 4 or 16
// bytes, numbers out of range, kinds and verdicts it does not know.
func (m *FlowRecord) Record(host string) (flow.Record, error) {
	r := flow.Record{
		ID:          m.GetId(),
		Host:        host,
		SrcWorkload: m.GetSrcWorkload(),
		DstWorkload: m.GetDstWorkload(),
		SrcBytes:    m.GetBytesOrig(),
		SrcPackets:  m.GetPacketsOrig(),
		DstBytes:    m.GetBytesReply(),
		DstPackets:  m.GetPacketsReply(),
		Start:       fromUnixNanos(m.GetStartUnixNanos()),
		End:         fromUnixNanos(m.GetEndUnixNanos()),
		Seen:        fromUnixNanos(m.GetSeenUnixNanos()),
		RuleID:      m.GetRuleId(),
		App:         m.GetApp(),
		TLSVersion:  m.GetTlsVersion(),
		ServerName:  m.GetServerName(),
	}
	var ok bool
	if r.Src, ok = netip.AddrFromSlice(m.GetSrcIp()); !ok {
		return r, fmt.Errorf("flow record %q: src_ip: %d bytes, want 4 or 16", r.ID, len(m.GetSrcIp()))
	}
	if r.Dst, ok = netip.AddrFromSlice(m.GetDstIp()); !ok {
		return r, fmt.Errorf("flow record %q: dst_ip: %d bytes, want 4 or 16", r.ID, len(m.GetDstIp()))
	}
	// A mapped IPv4 address is the same host as the IPv4 one; the store
	// and the filters expect the short form.
	r.Src, r.Dst = r.Src.Unmap(), r.Dst.Unmap()
	for _, f := range []struct {
		name string
		v    uint32
		max  uint32
	}{
		{"protocol", m.GetProtocol(), math.MaxUint8},
		{"src_port", m.GetSrcPort(), math.MaxUint16},
		{"dst_port", m.GetDstPort(), math.MaxUint16},
		{"icmp_type", m.GetIcmpType(), math.MaxUint8},
		{"icmp_code", m.GetIcmpCode(), math.MaxUint8},
	} {
		if f.v > f.max {
			return r, fmt.Errorf("flow record %q: %s %d out of range 0-%d", r.ID, f.name, f.v, f.max)
		}
	}
	// The L7 names are short by nature (an AppID, a DNS name of at most
	// 253 bytes); a longer one is not what the reader produces.
	for _, f := range []struct {
		name, v string
	}{{"app", r.App}, {"tls_version", r.TLSVersion}, {"server_name", r.ServerName}} {
		if len(f.v) > maxL7Name {
			return r, fmt.Errorf("flow record %q: %s: %d bytes, want at most %d", r.ID, f.name, len(f.v), maxL7Name)
		}
	}
	r.Proto, r.SrcPort, r.DstPort = uint8(m.GetProtocol()), uint16(m.GetSrcPort()), uint16(m.GetDstPort())
	r.ICMPType, r.ICMPCode = uint8(m.GetIcmpType()), uint8(m.GetIcmpCode())
	switch k := m.GetKind(); k {
	case FlowKind_FLOW_KIND_UPDATE, FlowKind_FLOW_KIND_END, FlowKind_FLOW_KIND_DROP:
		r.Kind = flow.Kind(k)
	default:
		return r, fmt.Errorf("flow record %q: kind %v: want update, end or drop", r.ID, k)
	}
	switch v := m.GetVerdict(); v {
	case Verdict_VERDICT_ALLOW, Verdict_VERDICT_DROP, Verdict_VERDICT_REJECT:
		r.Verdict = flow.Verdict(v)
	default:
		return r, fmt.Errorf("flow record %q: verdict %v: want allow, drop or reject", r.ID, v)
	}
	return r, nil
}

// FlowRecords converts a received batch for host. A record it cannot convert
// is left out and counted in bad, with the first such error in err: one
// malformed record must not keep the rest of the batch from the store, nor
// make the agent resend a batch that can never be taken.
func (b *FlowBatch) FlowRecords(host string) (recs []flow.Record, bad int, err error) {
	recs = make([]flow.Record, 0, len(b.GetRecords()))
	for _, m := range b.GetRecords() {
		r, e := m.Record(host)
		if e != nil {
			bad++
			if err == nil {
				err = e
			}
			continue
		}
		recs = append(recs, r)
	}
	return recs, bad, err
}

// maxL7Name bounds a record's App, TLSVersion and ServerName: a DNS name
// is at most 253 bytes.
const maxL7Name = 253

func addrBytes(a netip.Addr) []byte {
	if !a.IsValid() {
		return nil
	}
	return a.AsSlice()
}

func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
