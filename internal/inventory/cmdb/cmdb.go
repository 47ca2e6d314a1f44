// Package cmdb parses CMDB exports (CSV, or JSON as ServiceNow's Table API
// and JSONv2 export write them) into inventory records, with a mapping from
// columns to workload fields. Bad rows are reported with their line and
// reason; good rows are kept.
package cmdb

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/inventory"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// Fields a mapping may name besides "tag.KEY" and free attributes.
const (
	FieldName    = "name"    // workload name (required)
	FieldIP      = "ip"      // one or more addresses
	FieldKey     = "key"     // the row's identity in the CMDB; default: the name
	FieldUpdated = "updated" // when the row last changed; default: the import time
)

// DefaultMapping makes a ServiceNow cmdb_ci_server export work as is. A
// default whose column a file lacks is ignored.
func DefaultMapping() map[string]string {
	return map[string]string{
		FieldName:    "name",
		FieldIP:      "ip_address",
		FieldKey:     "sys_id",
		FieldUpdated: "sys_updated_on",
		"owner":      "owned_by",
		"os":         "os",
		"location":   "location",
		"tag.app":    "u_application",
		"tag.env":    "u_environment",
		"tag.tier":   "u_tier",
	}
}

// DefaultSource names the source of imports that name none.
const DefaultSource = "cmdb"

// Options of a parse.
type Options struct {
	// Format is "csv" or "json"; empty guesses from the content.
	Format string
	// Mapping overrides DefaultMapping, field -> column; an empty column
	// removes a default. Columns match case-insensitively.
	Mapping map[string]string
	// Source names the records' source; empty means DefaultSource.
	Source string
	// Now is the observation time of rows without an update time.
	Now time.Time
}

// BadRow is a row that was not imported, and why.
type BadRow struct {
	// Line is the row's line in the file (1-based; for JSON, the line
	// where the record starts).
	Line int `json:"line"`
	// Record is the 1-based index of a JSON record; 0 for CSV.
	Record int    `json:"record,omitempty"`
	Reason string `json:"reason"`
}

func (b BadRow) String() string {
	if b.Record > 0 {
		return fmt.Sprintf("line %d (record %d): %s", b.Line, b.Record, b.Reason)
	}
	return fmt.Sprintf("line %d: %s", b.Line, b.Reason)
}

// Result of a parse: Rows = len(Records) + len(Bad).
type Result struct {
	Format  string
	Rows    int
	Records []inventory.Record
	Bad     []BadRow
}

// ParseMapping reads "name=u_hostname,ip=ip_address,tag.app=u_application".
func ParseMapping(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		field, col, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mapping %q: want FIELD=COLUMN", part)
		}
		field, col = strings.TrimSpace(field), strings.TrimSpace(col)
		if err := checkField(field); err != nil {
			return nil, fmt.Errorf("mapping %q: %w", part, err)
		}
		m[field] = col
	}
	return m, nil
}

func checkField(f string) error {
	if k, ok := strings.CutPrefix(f, "tag."); ok {
		if !tagexpr.ValidKey(k) {
			return fmt.Errorf("tag key %q cannot be used in a match expression; keys are letters, digits and _ . - /, starting with a letter or _", k)
		}
		return nil
	}
	if !tagexpr.ValidKey(f) {
		return fmt.Errorf("field %q: want name, ip, key, updated, tag.KEY or an attribute name (letters, digits, _ . -)", f)
	}
	return nil
}

// Parse reads a whole export. It fails only when the file as a whole is
// unusable (not CSV or JSON, no name column, a mapped column missing,
// broken JSON); a bad row is reported in Result.Bad.
func Parse(data []byte, o Options) (*Result, error) {
	p, err := newParser(o)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // Excel's BOM
	format := o.Format
	if format == "" {
		format = "csv"
		if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			format = "json"
		}
	}
	res := &Result{Format: format}
	switch format {
	case "csv":
		err = p.parseCSV(data, res)
	case "json":
		err = p.parseJSON(data, res)
	default:
		return nil, fmt.Errorf("cmdb: format %q: want csv or json", o.Format)
	}
	if err != nil {
		return nil, fmt.Errorf("cmdb: %s: %w", format, err)
	}
	return res, nil
}

type parser struct {
	o        Options
	mapping  map[string]string // field -> lowercase column
	explicit map[string]bool
	seen     map[string]int // key -> line of its first row
}

func newParser(o Options) (*parser, error) {
	if o.Source == "" {
		o.Source = DefaultSource
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	p := &parser{o: o, mapping: map[string]string{}, explicit: map[string]bool{}, seen: map[string]int{}}
	for f, c := range DefaultMapping() {
		p.mapping[f] = strings.ToLower(c)
	}
	for f, c := range o.Mapping {
		if err := checkField(f); err != nil {
			return nil, fmt.Errorf("cmdb: mapping: %w", err)
		}
		if c == "" {
			delete(p.mapping, f)
			continue
		}
		p.mapping[f] = strings.ToLower(strings.TrimSpace(c))
		p.explicit[f] = true
	}
	if p.mapping[FieldName] == "" {
		return nil, errors.New("cmdb: mapping: no column for the workload name")
	}
	return p, nil
}

// checkColumns fails when the name column, or a column the caller mapped
// explicitly, is not in the file; defaults the file lacks are dropped.
func (p *parser) checkColumns(have map[string]bool) error {
	for _, f := range slices.Sorted(maps.Keys(p.mapping)) {
		col := p.mapping[f]
		if have[col] {
			continue
		}
		if f == FieldName || p.explicit[f] {
			cols := slices.Sorted(maps.Keys(have))
			return fmt.Errorf("no column %q for %s; the columns are %s (map another with --map %s=COLUMN)", col, f, strings.Join(cols, ", "), f)
		}
		delete(p.mapping, f)
	}
	return nil
}

// row turns one row's values (by lowercase column) into a record.
func (p *parser) row(line int, get func(col string) (string, error)) (inventory.Record, error) {
	r := inventory.Record{Source: p.o.Source, Kind: inventory.KindCMDB, Observed: p.o.Now}
	val := func(field string) (string, error) {
		col, ok := p.mapping[field]
		if !ok {
			return "", nil
		}
		v, err := get(col)
		if err != nil {
			return "", fmt.Errorf("column %s: %w", col, err)
		}
		return strings.TrimSpace(v), nil
	}
	name, err := val(FieldName)
	if err != nil {
		return r, err
	}
	if name == "" {
		return r, fmt.Errorf("no name (column %s is empty)", p.mapping[FieldName])
	}
	if r.Name, err = inventory.WorkloadName(name); err != nil {
		return r, fmt.Errorf("column %s: %w", p.mapping[FieldName], err)
	}
	ips, err := val(FieldIP)
	if err != nil {
		return r, err
	}
	if r.IPs, err = inventory.SplitIPs(ips); err != nil {
		return r, fmt.Errorf("column %s: %w", p.mapping[FieldIP], err)
	}
	if r.Key, err = val(FieldKey); err != nil {
		return r, err
	}
	if r.Key == "" {
		r.Key = r.Name
	}
	updated, err := val(FieldUpdated)
	if err != nil {
		return r, err
	}
	if updated != "" {
		t, err := parseTime(updated)
		if err != nil {
			return r, fmt.Errorf("column %s: %w", p.mapping[FieldUpdated], err)
		}
		r.Observed = t
	}
	for _, f := range slices.Sorted(maps.Keys(p.mapping)) {
		switch f {
		case FieldName, FieldIP, FieldKey, FieldUpdated:
			continue
		}
		v, err := val(f)
		if err != nil {
			return r, err
		}
		if v == "" {
			continue
		}
		if k, ok := strings.CutPrefix(f, "tag."); ok {
			if r.Tags == nil {
				r.Tags = map[string]string{}
			}
			r.Tags[k] = v
			continue
		}
		if r.Attrs == nil {
			r.Attrs = map[string]string{}
		}
		r.Attrs[f] = v
	}
	if first, dup := p.seen[r.Key]; dup {
		return r, fmt.Errorf("duplicate key %q (column %s), first on line %d", r.Key, p.keyColumn(), first)
	}
	p.seen[r.Key] = line
	return r, nil
}

func (p *parser) keyColumn() string {
	if c, ok := p.mapping[FieldKey]; ok {
		return c
	}
	return p.mapping[FieldName]
}

// timeLayouts are the update-time formats accepted: ServiceNow's (UTC),
// RFC 3339, and a bare date.
var timeLayouts = []string{"2006-01-02 15:04:05", time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad date %q: want 2006-01-02 15:04:05 (UTC), RFC 3339 or 2006-01-02", s)
}

func (p *parser) parseCSV(data []byte, res *Result) error {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	r.ReuseRecord = false
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return errors.New("empty file: no header line")
	}
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	index := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if _, dup := index[h]; dup {
			return fmt.Errorf("header: column %q appears twice", h)
		}
		index[h] = i
	}
	have := map[string]bool{}
	for h := range index {
		have[h] = true
	}
	if err := p.checkColumns(have); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		res.Rows++
		if pe := (*csv.ParseError)(nil); errors.As(err, &pe) {
			res.Bad = append(res.Bad, BadRow{Line: pe.StartLine, Reason: pe.Err.Error()})
			continue
		} else if err != nil {
			return err
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(header) {
			res.Bad = append(res.Bad, BadRow{Line: line, Reason: fmt.Sprintf("%d columns, the header has %d", len(rec), len(header))})
			continue
		}
		out, err := p.row(line, func(col string) (string, error) { return rec[index[col]], nil })
		if err != nil {
			res.Bad = append(res.Bad, BadRow{Line: line, Reason: err.Error()})
			continue
		}
		res.Records = append(res.Records, out)
	}
}

// jsonRecord is one element of the records array and where it starts.
type jsonRecord struct {
	line   int
	fields map[string]json.RawMessage // lowercase keys
	err    error
}

func (p *parser) parseJSON(data []byte, res *Result) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxAt(data, dec, err)
	}
	switch tok {
	case json.Delim('['):
	case json.Delim('{'):
		// {"result": [...]} (Table API) or {"records": [...]} (JSONv2).
		found := false
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return syntaxAt(data, dec, err)
			}
			if key, _ := k.(string); key == "result" || key == "records" {
				t, err := dec.Token()
				if err != nil {
					return syntaxAt(data, dec, err)
				}
				if t != json.Delim('[') {
					return fmt.Errorf("line %d: %q is not an array", lineAt(data, dec.InputOffset()), key)
				}
				found = true
				break
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return syntaxAt(data, dec, err)
			}
		}
		if !found {
			return errors.New(`want an array of records, or an object with "result" or "records" holding one`)
		}
	default:
		return errors.New(`want an array of records, or an object with "result" or "records" holding one`)
	}

	var recs []jsonRecord
	have := map[string]bool{}
	for dec.More() {
		start := int(dec.InputOffset())
		for start < len(data) && strings.IndexByte(" \t\r\n,", data[start]) >= 0 {
			start++
		}
		jr := jsonRecord{line: lineAt(data, int64(start))}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxAt(data, dec, err)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			jr.err = errors.New("not an object")
		} else {
			jr.fields = make(map[string]json.RawMessage, len(obj))
			for k, v := range obj {
				k = strings.ToLower(strings.TrimSpace(k))
				jr.fields[k] = v
				have[k] = true
			}
		}
		recs = append(recs, jr)
	}
	if _, err := dec.Token(); err != nil {
		return syntaxAt(data, dec, err)
	}
	if len(recs) > 0 {
		if err := p.checkColumns(have); err != nil {
			return err
		}
	}
	for i, jr := range recs {
		res.Rows++
		bad := BadRow{Line: jr.line, Record: i + 1}
		if jr.err != nil {
			bad.Reason = jr.err.Error()
			res.Bad = append(res.Bad, bad)
			continue
		}
		out, err := p.row(jr.line, func(col string) (string, error) { return jsonValue(jr.fields[col]) })
		if err != nil {
			bad.Reason = err.Error()
			res.Bad = append(res.Bad, bad)
			continue
		}
		res.Records = append(res.Records, out)
	}
	return nil
}

// jsonValue reads a cell: a string, number, bool or null, or ServiceNow's
// {"display_value": ..., "value": ...}. The value is used (a choice's
// "prod" rather than "Production", a date in UTC rather than in the
// exporting user's zone) except for a reference, whose value is a sys_id
// and whose display value the name people know.
func jsonValue(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return scalar(v)
	}
	dv, hasDV := m["display_value"]
	val, hasV := m["value"]
	if !hasDV && !hasV {
		return "", errors.New(`an object without "display_value" or "value"`)
	}
	s, err := scalar(val)
	if err != nil {
		return "", err
	}
	if d, err := scalar(dv); err == nil && d != "" && (s == "" || isSysID(s)) {
		return d, nil
	}
	return s, nil
}

func isSysID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		if x {
			return "true", nil
		}
		return "false", nil
	case []any:
		return "", errors.New("an array is not a cell value")
	}
	return "", errors.New("an object is not a cell value")
}

func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

func syntaxAt(data []byte, dec *json.Decoder, err error) error {
	off := dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("line %d: unexpected end of file", lineAt(data, int64(len(data))))
	}
	return fmt.Errorf("line %d: %w", lineAt(data, off), err)
}
