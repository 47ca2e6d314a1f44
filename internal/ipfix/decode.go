// Package ipfix collects flow records from exporters outside Bulkhead —
// routers, switches and probes speaking IPFIX (RFC 7011) or NetFlow v9
// (RFC 3954) over UDP — and turns them into flow.Records for discovery.
//
// Decoding is goflow2's; this package keeps one template cache per
// exporter, guards the decoder against templates that would make it spin,
// and maps the information elements Bulkhead needs onto flow.Record.
package ipfix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// Information element ids (IANA IPFIX registry; NetFlow v9 uses the same
// numbers for these).
const (
	ieOctetDelta       = 1
	iePacketDelta      = 2
	ieProtocol         = 4
	ieSrcPort          = 7
	ieSrcIPv4          = 8
	ieDstPort          = 11
	ieDstIPv4          = 12
	ieLastSysUp        = 21
	ieFirstSysUp       = 22
	ieSrcIPv6          = 27
	ieDstIPv6          = 28
	ieICMPTypeCodeV4   = 32
	ieOctetTotal       = 85
	iePacketTotal      = 86
	ieICMPTypeCodeV6   = 139
	ieStartSeconds     = 150
	ieEndSeconds       = 151
	ieStartMillis      = 152
	ieEndMillis        = 153
	ieStartMicros      = 154
	ieEndMicros        = 155
	ieStartNanos       = 156
	ieEndNanos         = 157
	ieSystemInitMillis = 160

	// penReverse is RFC 5103's enterprise number: the same element ids,
	// counted in the reverse direction of a biflow.
	penReverse = 29305
)

// MaxExporters bounds the template caches a Decoder keeps; packets from
// further exporters are counted as Unknown and dropped, so a flood of
// spoofed sources cannot grow memory without bound.
const MaxExporters = 4096

// Stats counts what a Decoder has seen. All counters only grow.
type Stats struct {
	Packets   uint64 // datagrams handed to Decode
	Records   uint64 // flow records produced
	Malformed uint64 // datagrams goflow2 could not decode (records before the fault are kept)
	// NoTemplate counts data sets that arrived before their template.
	// They are dropped, not held: exporters resend templates periodically
	// (RFC 7011 §8.4), so the next report of the flow is decoded.
	NoTemplate uint64
	Skipped    uint64 // data records without both addresses (options data, L2-only records)
	Unknown    uint64 // datagrams from exporters beyond MaxExporters
}

// Decoder turns IPFIX and NetFlow v9 datagrams into flow records. Templates
// are kept per exporter (address and port, RFC 7011's transport session)
// and, inside goflow2's cache, per version and observation domain. It is
// safe for concurrent use.
type Decoder struct {
	// Prefix starts every record's Host: Prefix + "/" + exporter address.
	// Empty means "ipfix".
	Prefix string

	mu        sync.Mutex
	exporters map[netip.AddrPort]*templates
	stats     Stats
}

// Stats returns a copy of the counters.
func (d *Decoder) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Decode appends to dst the flow records of one datagram received from
// exporter at time now. A malformed datagram yields the records decoded
// before the fault and an error; it never panics.
func (d *Decoder) Decode(dst []flow.Record, exporter netip.AddrPort, pkt []byte, now time.Time) ([]flow.Record, error) {
	exporter = netip.AddrPortFrom(exporter.Addr().Unmap(), exporter.Port())
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Packets++
	ts, ok := d.exporters[exporter]
	if !ok {
		if len(d.exporters) >= MaxExporters {
			d.stats.Unknown++
			return dst, fmt.Errorf("ipfix: exporter %s: more than %d exporters", exporter, MaxExporters)
		}
		if d.exporters == nil {
			d.exporters = make(map[netip.AddrPort]*templates)
		}
		ts = &templates{inner: netflow.CreateTemplateSystem()}
		d.exporters[exporter] = ts
	}

	var v9 netflow.NFv9Packet
	var v10 netflow.IPFIXPacket
	err := netflow.DecodeMessageVersion(bytes.NewBuffer(pkt), ts, &v9, &v10)
	if err != nil && !errors.Is(err, netflow.ErrorTemplateNotFound) {
		d.stats.Malformed++
		err = fmt.Errorf("ipfix: exporter %s: %w", exporter, err)
	} else {
		err = nil
	}

	prefix := d.Prefix
	if prefix == "" {
		prefix = "ipfix"
	}
	h := header{host: prefix + "/" + exporter.Addr().String()}
	var sets []any
	switch {
	case v10.Version == 10:
		h.domain = v10.ObservationDomainId
		h.export = time.Unix(int64(v10.ExportTime), 0)
		sets = v10.FlowSets
	case v9.Version == 9:
		h.domain = v9.SourceId
		h.export = time.Unix(int64(v9.UnixSeconds), 0)
		h.v9 = true
		h.sysUptime = v9.SystemUptime
		sets = v9.FlowSets
	}
	if h.export.Unix() == 0 {
		h.export = now
	}
	for _, s := range sets {
		switch s := s.(type) {
		case netflow.RawFlowSet:
			d.stats.NoTemplate++
		case netflow.DataFlowSet:
			for i := range s.Records {
				r, ok := h.record(s.Records[i].Values)
				if !ok {
					d.stats.Skipped++
					continue
				}
				dst = append(dst, r)
				d.stats.Records++
			}
		case netflow.OptionsDataFlowSet:
			d.stats.Skipped += uint64(len(s.Records))
		}
	}
	return dst, err
}

// header is what a datagram's header contributes to its records.
type header struct {
	host      string
	domain    uint32
	export    time.Time
	v9        bool
	sysUptime uint32 // NetFlow v9: milliseconds since the exporter booted, at export
}

func (h *header) record(values []netflow.DataField) (flow.Record, bool) {
	r := flow.Record{Kind: flow.KindEnd, Host: h.host, Verdict: flow.Allow}
	var (
		deltas                   bool
		firstUp, lastUp, sysInit uint64
		haveFirst, haveLast      bool
		haveInit                 bool
	)
	for _, f := range values {
		b, _ := f.Value.([]byte)
		if b == nil {
			continue
		}
		if f.PenProvided {
			if f.Pen == penReverse {
				switch f.Type {
				case ieOctetDelta, ieOctetTotal:
					r.DstBytes = uintOf(b)
				case iePacketDelta, iePacketTotal:
					r.DstPackets = uintOf(b)
				}
			}
			continue
		}
		switch f.Type {
		case ieSrcIPv4, ieSrcIPv6:
			if a, ok := netip.AddrFromSlice(b); ok {
				r.Src = a
			}
		case ieDstIPv4, ieDstIPv6:
			if a, ok := netip.AddrFromSlice(b); ok {
				r.Dst = a
			}
		case ieProtocol:
			r.Proto = uint8(uintOf(b))
		case ieSrcPort:
			r.SrcPort = uint16(uintOf(b))
		case ieDstPort:
			r.DstPort = uint16(uintOf(b))
		case ieICMPTypeCodeV4, ieICMPTypeCodeV6:
			tc := uintOf(b)
			r.ICMPType, r.ICMPCode = uint8(tc>>8), uint8(tc)
		case ieOctetDelta:
			r.SrcBytes, deltas = uintOf(b), true
		case iePacketDelta:
			r.SrcPackets, deltas = uintOf(b), true
		case ieOctetTotal:
			r.SrcBytes = uintOf(b)
		case iePacketTotal:
			r.SrcPackets = uintOf(b)
		case ieStartSeconds:
			r.Start = time.Unix(int64(uintOf(b)), 0)
		case ieEndSeconds:
			r.End = time.Unix(int64(uintOf(b)), 0)
		case ieStartMillis:
			r.Start = time.UnixMilli(int64(uintOf(b)))
		case ieEndMillis:
			r.End = time.UnixMilli(int64(uintOf(b)))
		case ieStartMicros, ieStartNanos:
			r.Start = ntpTime(b)
		case ieEndMicros, ieEndNanos:
			r.End = ntpTime(b)
		case ieFirstSysUp:
			firstUp, haveFirst = uintOf(b), true
		case ieLastSysUp:
			lastUp, haveLast = uintOf(b), true
		case ieSystemInitMillis:
			sysInit, haveInit = uintOf(b), true
		}
	}
	if !r.Src.IsValid() || !r.Dst.IsValid() {
		return r, false
	}
	// Uptime-relative times: NetFlow v9 anchors them on the header's
	// uptime and export time, IPFIX on systemInitTimeMilliseconds.
	switch {
	case h.v9:
		if haveFirst && r.Start.IsZero() {
			r.Start = h.export.Add(-time.Duration(int32(h.sysUptime-uint32(firstUp))) * time.Millisecond)
		}
		if haveLast && r.End.IsZero() {
			r.End = h.export.Add(-time.Duration(int32(h.sysUptime-uint32(lastUp))) * time.Millisecond)
		}
	case haveInit:
		if haveFirst && r.Start.IsZero() {
			r.Start = time.UnixMilli(int64(sysInit + firstUp))
		}
		if haveLast && r.End.IsZero() {
			r.End = time.UnixMilli(int64(sysInit + lastUp))
		}
	}
	if r.End.IsZero() {
		r.End = h.export
	}
	if r.Start.IsZero() {
		r.Start = r.End
	}
	r.Start, r.End = r.Start.UTC(), r.End.UTC()
	r.Seen = r.End
	r.ID = fmt.Sprintf("%s/%08x/%016x/%d/%s/%d/%s/%d", h.host, h.domain, r.Start.UnixNano(),
		r.Proto, r.Src, r.SrcPort, r.Dst, r.DstPort)
	if deltas {
		// Delta counters of a long flow arrive as several reports with
		// the same start; the store keeps the largest counters per ID,
		// so each report needs its own ID or all but one would be lost.
		r.ID += fmt.Sprintf("/%016x", r.End.UnixNano())
	}
	return r, true
}

// uintOf reads a big-endian unsigned integer of 1 to 8 bytes (RFC 7011
// §6.2 reduced-size encoding); longer values keep their last 8 bytes.
func uintOf(b []byte) uint64 {
	if len(b) > 8 {
		b = b[len(b)-8:]
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// ntpEpochOffset is the seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const ntpEpochOffset = 2208988800

// ntpTime decodes RFC 7011's dateTimeMicroseconds/Nanoseconds: NTP
// seconds and a 32-bit binary fraction.
func ntpTime(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	sec := int64(binary.BigEndian.Uint32(b[:4])) - ntpEpochOffset
	frac := uint64(binary.BigEndian.Uint32(b[4:]))
	return time.Unix(sec, int64(frac*1e9>>32))
}

// templates is one exporter's template cache. It refuses templates whose
// records occupy no bytes: goflow2 would loop forever on their data sets.
// An IPFIX template with no fields is a withdrawal (RFC 7011 §8.1), so it
// removes the template it names.
type templates struct {
	inner netflow.NetFlowTemplateSystem
}

var _ netflow.NetFlowTemplateSystem = (*templates)(nil)

func (t *templates) AddTemplate(version uint16, domain uint32, id uint16, tmpl any) error {
	var fields [][]netflow.Field
	switch tmpl := tmpl.(type) {
	case netflow.TemplateRecord:
		fields = [][]netflow.Field{tmpl.Fields}
	case netflow.IPFIXOptionsTemplateRecord:
		fields = [][]netflow.Field{tmpl.Scopes, tmpl.Options}
	case netflow.NFv9OptionsTemplateRecord:
		fields = [][]netflow.Field{tmpl.Scopes, tmpl.Options}
	}
	for _, fs := range fields {
		for _, f := range fs {
			if f.Length != 0 {
				return t.inner.AddTemplate(version, domain, id, tmpl)
			}
		}
	}
	t.inner.RemoveTemplate(version, domain, id)
	return nil
}

func (t *templates) GetTemplate(version uint16, domain uint32, id uint16) (any, error) {
	return t.inner.GetTemplate(version, domain, id)
}

func (t *templates) RemoveTemplate(version uint16, domain uint32, id uint16) (any, error) {
	return t.inner.RemoveTemplate(version, domain, id)
}

func (t *templates) GetTemplates() netflow.FlowBaseTemplateSet { return t.inner.GetTemplates() }
