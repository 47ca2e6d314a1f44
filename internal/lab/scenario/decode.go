package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"github.com/bulkhead/bulkhead/internal/policy"
	"gopkg.in/yaml.v3"
)

// Error is one problem in a scenario, located as precisely as known.
type Error struct {
	File   string
	Line   int // 0 when unknown
	Column int // 0 when unknown
	// Object names the workload or traffic pattern concerned, if any
	// (`workload "db1"`).
	Object string
	// Path is the field, e.g. "workloads[3].apps[0].https.minTLS".
	Path string
	Msg  string
}

// Error formats e as "file:line:col: object: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.File == "" {
		b.WriteString("scenario")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Object != "" {
		b.WriteString(e.Object + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found, in file order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Err returns l as an error, or nil if it is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		return l[i].Column < l[j].Column
	})
	return l
}

// Parse decodes a scenario strictly (unknown fields, wrong types and
// duplicate keys are errors, each with its line), fills in defaults and
// validates it. It reports every error it finds as an ErrorList.
func Parse(file string, data []byte) (*Scenario, error) {
	return parse(file, data, false)
}

// parse is Parse; loopback lets tests run a scenario on 127.0.0.0/8.
func parse(file string, data []byte, loopback bool) (*Scenario, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, ErrorList(yamlError(file, err)).Err()
	}
	if root.Kind == 0 || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, ErrorList{{File: file, Line: root.Line, Msg: "a scenario is a mapping with name, network, hosts, workloads and traffic"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, ErrorList(yamlError(file, err)).Err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, ErrorList{{File: file, Line: extra.Line, Msg: "one scenario per file: remove the second document"}}
	}
	s.file, s.root, s.loopback = file, &root, loopback
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

var (
	yamlLineRE  = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	notFoundRE  = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	unmarshalRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// yamlError turns the decoder's error (one or many lines) into Errors.
func yamlError(file string, err error) []*Error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out []*Error
	for _, m := range msgs {
		e := &Error{File: file, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = sm[2]
		}
		if sm := notFoundRE.FindStringSubmatch(e.Msg); sm != nil {
			e.Msg = fmt.Sprintf("unknown field %q in %s", sm[1], friendlyType(sm[2]))
			if known := knownFields(sm[2]); len(known) > 0 {
				if best := closest(sm[1], known); best != "" {
					e.Msg += fmt.Sprintf("; did you mean %q?", best)
				} else {
					e.Msg += "; known: " + strings.Join(known, ", ")
				}
			}
		} else if sm := unmarshalRE.FindStringSubmatch(e.Msg); sm != nil {
			e.Msg = fmt.Sprintf("cannot use %s %q as %s", sm[1], sm[2], friendlyType(sm[3]))
		}
		out = append(out, e)
	}
	return out
}

// typeIndex maps a Go type's printed name ("apps.HTTPSConfig") to the YAML
// keys it accepts, for unknown-field errors.
var typeIndex = func() map[string][]string {
	idx := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.PkgPath() == "" {
			return
		}
		if _, done := idx[t.String()]; done {
			return
		}
		idx[t.String()] = nil
		idx[t.String()] = fieldsOf(t, walk)
	}
	walk(reflect.TypeFor[Scenario]())
	return idx
}()

func fieldsOf(t reflect.Type, walk func(reflect.Type)) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			keys = append(keys, fieldsOf(f.Type, walk)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys = append(keys, name)
		walk(f.Type)
	}
	return keys
}

func knownFields(typ string) []string {
	k := append([]string(nil), typeIndex[typ]...)
	sort.Strings(k)
	return k
}

var friendlyNames = map[string]string{
	"scenario.Scenario": "the scenario",
	"scenario.Network":  "network",
	"scenario.Host":     "a host",
	"scenario.Workload": "a workload",
	"scenario.Server":   "an app (one of " + strings.Join(serverApps(), ", ") + ")",
	"scenario.Traffic":  "a traffic pattern (from, and one of " + strings.Join(clientApps(), ", ") + ")",
}

func friendlyType(t string) string {
	if n, ok := friendlyNames[t]; ok {
		return n
	}
	if a, ok := strings.CutPrefix(t, "apps."); ok {
		return a
	}
	return t
}

// serverApps and clientApps list the application keys of Server and Traffic.
func serverApps() []string { return appKeys(reflect.TypeFor[Server]()) }
func clientApps() []string { return appKeys(reflect.TypeFor[Traffic]()) }

func appKeys(t reflect.Type) []string {
	var out []string
	cfg := reflect.TypeFor[apps.Config]()
	for i := range t.NumField() {
		if f := t.Field(i); f.Type.Implements(cfg) {
			out = append(out, yamlKey(f))
		}
	}
	return out
}

// closest returns the known key nearest to s (case-insensitive edit
// distance at most 2), or "".
func closest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := policy.EditDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// position finds where path ("workloads[2].apps[0].https.port",
// `tags["app"]`) was written, or its nearest written parent.
func (s *Scenario) position(path string) (line, col int) {
	if s.root == nil || len(s.root.Content) == 0 {
		return 0, 0
	}
	n := s.root.Content[0]
	line, col = n.Line, n.Column
	for _, seg := range splitPath(path) {
		var key, val *yaml.Node
		switch {
		case n.Kind == yaml.SequenceNode && seg.index >= 0 && seg.index < len(n.Content):
			val = n.Content[seg.index]
		case n.Kind == yaml.MappingNode && seg.index < 0:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg.key {
					key, val = n.Content[i], n.Content[i+1]
					break
				}
			}
		}
		if val == nil {
			return line, col
		}
		if val.Kind == yaml.AliasNode && val.Alias != nil {
			val = val.Alias
		}
		n = val
		line, col = val.Line, val.Column
		if key != nil && (val.Kind == yaml.MappingNode || val.Kind == yaml.SequenceNode) && val.Style&yaml.FlowStyle == 0 {
			// A block starts on the line after its key: point at the key.
			line, col = key.Line, key.Column
		}
	}
	return line, col
}

type pathSeg struct {
	key   string
	index int // -1 for a key
}

// splitPath splits "a.b[2].c" and `a["x.y"]` into segments.
func splitPath(p string) []pathSeg {
	var out []pathSeg
	for len(p) > 0 {
		switch {
		case p[0] == '.':
			p = p[1:]
		case strings.HasPrefix(p, `["`):
			end := strings.Index(p[2:], `"]`)
			if end < 0 {
				return out
			}
			out = append(out, pathSeg{key: p[2 : 2+end], index: -1})
			p = p[2+end+2:]
		case p[0] == '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return out
			}
			n, err := strconv.Atoi(p[1:end])
			if err != nil {
				return out
			}
			out = append(out, pathSeg{index: n})
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			out = append(out, pathSeg{key: p[:end], index: -1})
			p = p[end:]
		}
	}
	return out
}
