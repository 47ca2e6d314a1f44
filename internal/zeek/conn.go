// Package zeek imports Zeek's conn.log — the tab-separated form with its
// #fields header and the JSON-lines form — as flow records, so networks
// that already run Zeek sensors feed discovery without a Bulkhead agent.
//
// Bad lines are reported with their line numbers and skipped; the good
// lines around them are kept.
package zeek

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// MaxLineErrors bounds the line errors Parse returns; Result.Bad counts
// them all.
const MaxLineErrors = 100

// maxLine is the longest line read; Zeek's conn lines are a few hundred
// bytes, so anything near this is not a conn.log.
const maxLine = 1 << 20

// LineError is one line that could not be imported.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Result says what Parse did besides emitting records.
type Result struct {
	Records int
	Bad     int          // lines skipped
	Errors  []*LineError // the first MaxLineErrors of them
}

// Parse reads a conn.log from r and calls emit with each connection, in
// order. Each record's Host is host (name the sensor, e.g. "zeek:sensor1");
// its ID is host, "/" and Zeek's uid. Lines starting with '{' are read as JSON, other
// lines as TSV under the last #fields header. Parse stops early only if r
// fails, a line exceeds 1 MiB, or emit returns an error; those errors are
// returned, wrapped.
func Parse(r io.Reader, host string, emit func(flow.Record) error) (Result, error) {
	var (
		res  Result
		tsv  = tsvHeader{sep: "\t", unset: "-", empty: "(empty)"}
		line int
	)
	bad := func(err error) {
		res.Bad++
		if len(res.Errors) < MaxLineErrors {
			res.Errors = append(res.Errors, &LineError{Line: line, Err: err})
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		var (
			c   conn
			err error
		)
		switch {
		case strings.TrimSpace(text) == "":
			continue
		case text[0] == '#':
			if err := tsv.directive(text); err != nil {
				bad(err)
			}
			continue
		case text[0] == '{':
			c, err = parseJSON(text)
		default:
			c, err = tsv.parse(text)
		}
		if err != nil {
			bad(err)
			continue
		}
		rec, err := c.record(host)
		if err != nil {
			bad(err)
			continue
		}
		if err := emit(rec); err != nil {
			return res, fmt.Errorf("zeek: line %d: %w", line, err)
		}
		res.Records++
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("zeek: after line %d: %w", line, err)
	}
	return res, nil
}

// conn is one conn.log entry. Values are kept unboxed with a set flag,
// not as pointers, so a line costs no allocations per field.
type conn struct {
	ts, uid, origH, respH, proto, duration opt[string]
	origP, respP                           opt[uint64]
	origBytes, respBytes                   opt[uint64]
	origIPBytes, respIPBytes               opt[uint64]
	origPkts, respPkts                     opt[uint64]
}

// opt is a field that may be unset ("-" in TSV, null or absent in JSON).
type opt[T any] struct {
	v  T
	ok bool
}

func (c *conn) record(host string) (flow.Record, error) {
	r := flow.Record{Kind: flow.KindEnd, Host: host, Verdict: flow.Allow}
	if !c.ts.ok || !c.origH.ok || !c.respH.ok || !c.proto.ok {
		return r, errors.New("ts, id.orig_h, id.resp_h and proto are required")
	}
	var err error
	if r.Start, err = parseTime(c.ts.v); err != nil {
		return r, fmt.Errorf("ts: %w", err)
	}
	if r.Src, err = netip.ParseAddr(c.origH.v); err != nil {
		return r, fmt.Errorf("id.orig_h: %w", err)
	}
	if r.Dst, err = netip.ParseAddr(c.respH.v); err != nil {
		return r, fmt.Errorf("id.resp_h: %w", err)
	}
	r.Src, r.Dst = r.Src.Unmap(), r.Dst.Unmap()
	if r.Src.Is4() != r.Dst.Is4() {
		return r, fmt.Errorf("id.orig_h %s and id.resp_h %s are of different families", r.Src, r.Dst)
	}
	for _, p := range []opt[uint64]{c.origP, c.respP} {
		if p.v > 0xffff {
			return r, fmt.Errorf("port %d out of range", p.v)
		}
	}
	get := func(p opt[uint64]) uint64 { return p.v }
	switch c.proto.v {
	case "tcp":
		r.Proto = 6
	case "udp":
		r.Proto = 17
	case "icmp":
		// Zeek puts the ICMP type in orig_p and the code in resp_p.
		r.Proto = 1
		if r.Src.Is6() {
			r.Proto = 58
		}
		r.ICMPType, r.ICMPCode = uint8(get(c.origP)), uint8(get(c.respP))
	default:
		return r, fmt.Errorf("proto %q: want tcp, udp or icmp", c.proto.v)
	}
	if !r.IsICMP() {
		r.SrcPort, r.DstPort = uint16(get(c.origP)), uint16(get(c.respP))
	}
	r.End = r.Start
	if c.duration.ok {
		d, err := parseDecimal(c.duration.v)
		if err != nil {
			return r, fmt.Errorf("duration: %w", err)
		}
		r.End = r.Start.Add(time.Duration(d))
	}
	r.Seen = r.End
	// IP lengths are what flow.Record counts; the payload bytes are the
	// fallback for logs written without them.
	r.SrcBytes, r.DstBytes = get(c.origIPBytes), get(c.respIPBytes)
	if !c.origIPBytes.ok {
		r.SrcBytes = get(c.origBytes)
	}
	if !c.respIPBytes.ok {
		r.DstBytes = get(c.respBytes)
	}
	r.SrcPackets, r.DstPackets = get(c.origPkts), get(c.respPkts)
	if c.uid.v != "" {
		r.ID = host + "/" + c.uid.v
	} else {
		// Without a uid, the start and the 5-tuple name the connection.
		r.ID = fmt.Sprintf("%s/%016x/%d/%s/%d/%s/%d", host, r.Start.UnixNano(), r.Proto, r.Src, r.SrcPort, r.Dst, r.DstPort)
	}
	return r, nil
}

// parseTime reads Zeek's ts: epoch seconds with a fraction, or (in JSON
// logs written with JSON::TS_ISO8601) an RFC 3339 string.
func parseTime(s string) (time.Time, error) {
	if strings.ContainsAny(s, "T-:") {
		t, err := time.Parse(time.RFC3339Nano, s)
		return t.UTC(), err
	}
	ns, err := parseDecimal(s)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, ns).UTC(), nil
}

// parseDecimal reads non-negative decimal seconds as nanoseconds, without
// the rounding a float64 would add to microsecond epoch times.
func parseDecimal(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	if whole == "" {
		whole = "0"
	}
	sec, err := strconv.ParseUint(whole, 10, 64)
	if err != nil || sec > 1<<33 {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	var ns uint64
	if frac != "" {
		if ns, err = strconv.ParseUint(frac, 10, 64); err != nil {
			return 0, fmt.Errorf("%q is not a number of seconds", s)
		}
		for range 9 - len(frac) {
			ns *= 10
		}
	}
	return int64(sec)*1e9 + int64(ns), nil
}

// tsvHeader is the state of Zeek's ASCII writer directives.
type tsvHeader struct {
	sep, unset, empty string
	fields            []string
}

func (h *tsvHeader) directive(line string) error {
	// #separator comes first and uses a space, since the separator is
	// not yet known; the others use the separator.
	if v, ok := strings.CutPrefix(line, "#separator "); ok {
		sep, err := unescape(v)
		if err != nil || sep == "" {
			return fmt.Errorf("#separator %q: %v", v, err)
		}
		h.sep = sep
		return nil
	}
	name, value, _ := strings.Cut(line[1:], h.sep)
	switch name {
	case "fields":
		h.fields = strings.Split(value, h.sep)
	case "unset_field":
		h.unset = value
	case "empty_field":
		h.empty = value
	}
	return nil
}

// unescape reads the \xHH escapes Zeek writes in #separator.
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				return "", err
			}
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

func (h *tsvHeader) parse(line string) (conn, error) {
	var c conn
	if h.fields == nil {
		return c, errors.New("data before a #fields header")
	}
	cols := strings.Split(line, h.sep)
	if len(cols) != len(h.fields) {
		return c, fmt.Errorf("%d columns, #fields has %d", len(cols), len(h.fields))
	}
	for i, name := range h.fields {
		v := cols[i]
		if v == h.unset || v == h.empty {
			continue
		}
		if err := c.set(name, v); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *conn) set(name, v string) error {
	str := func(p *opt[string]) { *p = opt[string]{v, true} }
	num := func(p *opt[uint64]) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a count", name, v)
		}
		*p = opt[uint64]{n, true}
		return nil
	}
	switch name {
	case "ts":
		str(&c.ts)
	case "uid":
		str(&c.uid)
	case "id.orig_h":
		str(&c.origH)
	case "id.resp_h":
		str(&c.respH)
	case "proto":
		str(&c.proto)
	case "duration":
		str(&c.duration)
	case "id.orig_p":
		return num(&c.origP)
	case "id.resp_p":
		return num(&c.respP)
	case "orig_bytes":
		return num(&c.origBytes)
	case "resp_bytes":
		return num(&c.respBytes)
	case "orig_ip_bytes":
		return num(&c.origIPBytes)
	case "resp_ip_bytes":
		return num(&c.respIPBytes)
	case "orig_pkts":
		return num(&c.origPkts)
	case "resp_pkts":
		return num(&c.respPkts)
	}
	return nil
}

// parseJSON reads one line of Zeek's JSON writer. Fields Bulkhead does not
// use are ignored; null and absent are both unset.
func parseJSON(line string) (conn, error) {
	var m map[string]json.RawMessage
	var c conn
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return c, fmt.Errorf("json: %w", err)
	}
	for name, raw := range m {
		if string(raw) == "null" {
			continue
		}
		var v string
		switch raw[0] {
		case '"':
			if err := json.Unmarshal(raw, &v); err != nil {
				return c, fmt.Errorf("%s: %w", name, err)
			}
			if name != "ts" && name != "uid" && name != "id.orig_h" && name != "id.resp_h" && name != "proto" {
				// A count written as a string is a malformed log,
				// but a string field is what it should be.
				switch name {
				case "duration", "id.orig_p", "id.resp_p", "orig_bytes", "resp_bytes",
					"orig_ip_bytes", "resp_ip_bytes", "orig_pkts", "resp_pkts":
					return c, fmt.Errorf("%s: want a number, got %s", name, raw)
				}
				continue
			}
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			switch name {
			case "uid", "id.orig_h", "id.resp_h", "proto":
				return c, fmt.Errorf("%s: want a string, got %s", name, raw)
			}
			v = string(raw)
		default:
			continue
		}
		if err := c.set(name, v); err != nil {
			return c, err
		}
	}
	return c, nil
}
