package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Document is one object read from a file, with where it came from.
type Document struct {
	Source Source
	Object Object
}

// KindList is the envelope of exports: a document with kind List holds its
// objects under items.
const KindList Kind = "List"

// maxNodes bounds the YAML nodes one Decode call walks, so that aliases
// expanding into each other cannot make a small input take unbounded time.
const maxNodes = 1 << 20

// NewObject returns a new, empty object of kind k, or nil if k is not a kind.
func NewObject(k Kind) Object {
	switch k {
	case KindWorkload:
		return &Workload{}
	case KindGroup:
		return &Group{}
	case KindService:
		return &Service{}
	case KindContextProfile:
		return &ContextProfile{}
	case KindPolicy:
		return &Policy{}
	case KindDefaultRule:
		return &DefaultRule{}
	case KindIDSProfile:
		return &IDSProfile{}
	case KindIDSVariables:
		return &IDSVariables{}
	}
	return nil
}

// KindOf returns the kind of o from its Go type, whatever its header says.
func KindOf(o Object) Kind {
	switch o.(type) {
	case *Workload:
		return KindWorkload
	case *Group:
		return KindGroup
	case *Service:
		return KindService
	case *ContextProfile:
		return KindContextProfile
	case *Policy:
		return KindPolicy
	case *DefaultRule:
		return KindDefaultRule
	case *IDSProfile:
		return KindIDSProfile
	case *IDSVariables:
		return KindIDSVariables
	}
	return ""
}

// Decode reads a stream of YAML (or JSON) documents. Each document is one
// object, or a List whose items are objects. Decoding is strict: unknown
// fields, values of the wrong type, duplicate keys, a missing or wrong
// apiVersion, kind or metadata.name are errors, and so is the same object
// twice in one file. Decode reports every error it finds, in every document,
// as an ErrorList; if there is any, it returns no documents.
func Decode(file string, data []byte) ([]Document, error) {
	d := &decoder{file: file}
	var docs []Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for index := 1; ; index++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.errs = append(d.errs, syntaxError(Source{File: file, Index: index}, err))
			break
		}
		d.index = index
		docs = append(docs, d.document(index, &root)...)
	}
	d.checkDuplicates(docs)
	if err := d.errs.Err(); err != nil {
		return nil, err
	}
	return docs, nil
}

// DecodeObject decodes exactly one object from YAML or JSON text, strictly,
// as Decode does. Use Decode to keep the positions for later errors.
func DecodeObject(data []byte) (Object, error) {
	docs, err := Decode("", data)
	if err != nil {
		// "document 1" says nothing when there is one; drop it.
		var l ErrorList
		if errors.As(err, &l) && !slices.ContainsFunc(l, func(e *FieldError) bool { return e.Source.Index > 1 }) {
			for _, e := range l {
				e.Source.Index = 0
			}
		}
		return nil, err
	}
	if len(docs) != 1 {
		return nil, ErrorList{{Reason: fmt.Sprintf("expected one object, got %d", len(docs))}}
	}
	return docs[0].Object, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns a YAML parser error into a FieldError with its line.
func syntaxError(src Source, err error) *FieldError {
	msg := err.Error()
	fe := &FieldError{Source: src}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	fe.Reason = "YAML syntax: " + msg
	return fe
}

type decoder struct {
	file  string
	index int // document being decoded
	errs  ErrorList
	nodes int // walked so far, against maxNodes
}

// document decodes one YAML document: nothing, an object, or a List.
func (d *decoder) document(index int, root *yaml.Node) []Document {
	n := root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if isNull(n) {
		return nil // "---" followed by nothing, or a comment
	}
	src := Source{File: d.file, Index: index, Line: n.Line}
	if n.Kind != yaml.MappingNode {
		d.errs = append(d.errs, &FieldError{Source: src, Line: n.Line, Column: n.Column,
			Reason: "expected an object (a mapping with apiVersion, kind, metadata and spec), got " + describe(n)})
		return nil
	}
	if k, _ := scalarField(n, "kind"); k == string(KindList) {
		return d.list(src, n)
	}
	if doc, ok := d.object(src, n, ""); ok {
		return []Document{doc}
	}
	return nil
}

// list decodes a kind: List envelope; each item becomes a document of its own
// that shares the envelope's document number.
func (d *decoder) list(src Source, n *yaml.Node) []Document {
	env := &objectDecoder{d: d, src: src, kind: KindList, pos: map[string]Position{}}
	var items *yaml.Node
	env.mapping(n, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "apiVersion":
			if s, ok := env.scalarString(v, key); ok && s != "" && s != APIVersion && s != "v1" {
				env.errorf(key, v, "unsupported version %q; expected %q", s, APIVersion)
			}
		case "kind":
		case "metadata": // exports carry list metadata (resourceVersion...); it means nothing here
		case "items":
			items = v
		default:
			env.unknownField(key, k, []string{"apiVersion", "kind", "metadata", "items"})
		}
	})
	env.flush()
	if items == nil {
		return nil
	}
	items = d.resolve(items)
	if items == nil {
		return nil
	}
	if items.Kind != yaml.SequenceNode {
		if !isNull(items) {
			d.errs = append(d.errs, &FieldError{Source: src, Kind: KindList, Field: "items", Line: items.Line, Column: items.Column,
				Reason: "expected a list, got " + describe(items)})
		}
		return nil
	}
	var docs []Document
	for i, item := range items.Content {
		item = d.resolve(item)
		if item == nil {
			return docs
		}
		prefix := fmt.Sprintf("items[%d]", i)
		isrc := src
		isrc.Line = item.Line
		if item.Kind != yaml.MappingNode {
			d.errs = append(d.errs, &FieldError{Source: isrc, Field: prefix, Line: item.Line, Column: item.Column,
				Reason: "expected an object, got " + describe(item)})
			continue
		}
		if k, _ := scalarField(item, "kind"); k == string(KindList) {
			d.errs = append(d.errs, &FieldError{Source: isrc, Field: prefix + ".kind", Line: item.Line, Column: item.Column,
				Reason: "a List cannot hold a List"})
			continue
		}
		if doc, ok := d.object(isrc, item, prefix+"."); ok {
			docs = append(docs, doc)
		}
	}
	return docs
}

// object decodes one object mapping. Errors name fields as errPrefix+path,
// but positions are recorded without the prefix: they are the object's own.
func (d *decoder) object(src Source, n *yaml.Node, errPrefix string) (Document, bool) {
	od := &objectDecoder{d: d, src: src, errPrefix: errPrefix, pos: map[string]Position{}}
	defer od.flush()

	kindText, kindNode := scalarField(n, "kind")
	var obj Object
	switch {
	case kindNode == nil:
		od.errorf("kind", n, "missing required field")
	case kindNode.Kind != yaml.ScalarNode:
		od.errorf("kind", kindNode, "expected a string, got %s", describe(kindNode))
	case kindText == "":
		od.errorf("kind", kindNode, "missing required field")
	default:
		obj = NewObject(Kind(kindText))
		if obj == nil {
			names := make([]string, len(Kinds))
			for i, k := range Kinds {
				names[i] = string(k)
			}
			od.errorf("kind", kindNode, "unknown kind %q%s", kindText, suggest(kindText, names))
		}
	}
	if obj == nil {
		// Without a type the rest cannot be checked; still say what else
		// is missing from the envelope.
		if av, avNode := scalarField(n, "apiVersion"); avNode == nil || av == "" {
			od.errorf("apiVersion", n, "missing required field")
		} else if av != APIVersion {
			od.errorf("apiVersion", avNode, "unsupported version %q; expected %q", av, APIVersion)
		}
		return Document{}, false
	}
	od.kind = Kind(kindText)
	if name, _ := scalarField(mappingField(n, "metadata"), "name"); name != "" {
		od.name = name
	}
	od.value(n, reflect.ValueOf(obj).Elem(), "")

	// A field of the wrong type has been reported already; only say
	// "missing" of fields that are absent, null or empty.
	h := obj.GetHeader()
	_, avNode := scalarField(n, "apiVersion")
	switch {
	case h.APIVersion == "" && (avNode == nil || avNode.Kind == yaml.ScalarNode):
		od.errorf("apiVersion", orNode(avNode, n), "missing required field")
	case h.APIVersion != "" && h.APIVersion != APIVersion:
		od.errorf("apiVersion", avNode, "unsupported version %q; expected %q", h.APIVersion, APIVersion)
	}
	_, mdNode := scalarField(n, "metadata")
	_, nameNode := scalarField(mappingField(n, "metadata"), "name")
	if h.Metadata.Name == "" && (mdNode == nil || isNull(mdNode) || mdNode.Kind == yaml.MappingNode) &&
		(nameNode == nil || nameNode.Kind == yaml.ScalarNode) {
		od.errorf("metadata.name", orNode(nameNode, orNode(mdNode, n)), "missing required field")
	}
	src.At = &Positions{ByPath: od.pos}
	return Document{Source: src, Object: obj}, len(od.errs) == 0
}

// checkDuplicates reports an object given twice in the same call.
func (d *decoder) checkDuplicates(docs []Document) {
	first := map[ObjectKey]Source{}
	for _, doc := range docs {
		h := doc.Object.GetHeader()
		key := ObjectKey{Kind: h.Kind, Name: h.Metadata.Name}
		if prev, ok := first[key]; ok {
			d.errs = append(d.errs, &FieldError{Source: doc.Source, Kind: key.Kind, Name: key.Name, Line: doc.Source.Line,
				Reason: fmt.Sprintf("%s %q is defined twice; first in document %d (line %d)", key.Kind, key.Name, prev.Index, prev.Line)})
			continue
		}
		first[key] = doc.Source
	}
}

// resolve follows aliases and charges the node against the budget; nil means
// the budget is spent (the error is recorded once).
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
		d.nodes++
	}
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errs = append(d.errs, &FieldError{Source: Source{File: d.file, Index: d.index}, Line: n.Line,
				Reason: fmt.Sprintf("input too large: more than %d values once aliases are expanded", maxNodes)})
		}
		return nil
	}
	return n
}

// objectDecoder walks one object's nodes against its Go type.
type objectDecoder struct {
	d         *decoder
	src       Source
	errPrefix string
	kind      Kind
	name      string
	pos       map[string]Position
	errs      ErrorList
}

func (od *objectDecoder) errorf(path string, n *yaml.Node, format string, args ...any) {
	od.errs = append(od.errs, &FieldError{Field: od.errPrefix + path, Line: n.Line, Column: n.Column, Reason: fmt.Sprintf(format, args...)})
}

// flush moves the object's errors to the call's list, now that the kind and
// name they belong to are known.
func (od *objectDecoder) flush() {
	for _, e := range od.errs {
		e.Source, e.Kind, e.Name = od.src, od.kind, od.name
	}
	od.d.errs = append(od.d.errs, od.errs...)
	od.errs = nil
}

// value decodes n into v, which is addressable.
func (od *objectDecoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n = od.d.resolve(n); n == nil {
		return
	}
	od.pos[path] = Position{n.Line, n.Column}
	if isNull(n) {
		return // absent and null are the same: the zero value
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		od.value(n, v.Elem(), path)
	case reflect.String:
		if s, ok := od.scalarString(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			od.errorf(path, n, "expected true or false, got %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			od.errorf(path, n, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && bigInt.MatchString(n.Value) {
				// YAML reads integers too big for 64 bits as floats.
				od.errorf(path, n, "integer %s out of range", n.Value)
				return
			}
			od.errorf(path, n, "expected an integer, got %s", describe(n))
			return
		}
		if n.Decode(&i) != nil || v.OverflowInt(i) {
			od.errorf(path, n, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || strings.HasPrefix(n.Value, "-") {
			od.errorf(path, n, "expected a non-negative integer, got %s", describe(n))
			return
		}
		if n.Decode(&u) != nil || v.OverflowUint(u) {
			od.errorf(path, n, "integer %s out of range", n.Value)
			return
		}
		v.SetUint(u)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			od.errorf(path, n, "expected a list, got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			od.value(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			od.errorf(path, n, "expected a mapping, got %s", describe(n))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			panic("policy: decode: map key of type " + v.Type().Key().String())
		}
		if len(n.Content) == 0 {
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		od.mapping(n, path, func(key string, k, val *yaml.Node) {
			e := reflect.New(v.Type().Elem()).Elem()
			od.value(val, e, joinKey(path, key))
			m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), e)
		})
		v.Set(m)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			od.errorf(path, n, "expected a mapping, got %s", describe(n))
			return
		}
		fields := structFields(v.Type())
		od.mapping(n, path, func(key string, k, val *yaml.Node) {
			f, ok := fields.byName[key]
			if !ok {
				od.unknownField(joinField(path, key), k, fields.names)
				return
			}
			od.value(val, v.FieldByIndex(f.index), joinField(path, key))
		})
	default:
		panic("policy: decode: unsupported field type " + v.Type().String())
	}
}

// mapping calls fn for each key of a mapping node in order, after checking
// that the key is a plain scalar seen for the first time.
func (od *objectDecoder) mapping(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k = od.d.resolve(k); k == nil {
			return
		}
		if k.Kind != yaml.ScalarNode {
			od.errorf(path, k, "expected a plain key, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			od.errorf(joinField(path, k.Value), k, "merge keys (<<) are not supported; write the fields out")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			od.errorf(joinKey(path, k.Value), k, "duplicate key (first at line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		fn(k.Value, k, v)
	}
}

func (od *objectDecoder) unknownField(path string, k *yaml.Node, known []string) {
	if s := suggest(k.Value, known); s != "" {
		od.errorf(path, k, "unknown field%s", s)
		return
	}
	od.errorf(path, k, "unknown field; expected one of %s", strings.Join(known, ", "))
}

// scalarString reads a string. Plain numbers and booleans are read as
// written (minVersion: 1.3 is "1.3"), since they are strings to the user.
func (od *objectDecoder) scalarString(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		od.errorf(path, n, "expected a string, got %s", describe(n))
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

// scalarField returns the value of a scalar key of a mapping, ignoring
// aliases and anything that is not a plain scalar; it is for peeking at kind
// and name before the strict walk reports on them.
func scalarField(n *yaml.Node, key string) (string, *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return "", nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			v := n.Content[i+1]
			if v.Kind != yaml.ScalarNode || isNull(v) {
				return "", v
			}
			return v.Value, v
		}
	}
	return "", nil
}

func orNode(n, fallback *yaml.Node) *yaml.Node {
	if n == nil {
		return fallback
	}
	return n
}

func mappingField(n *yaml.Node, key string) *yaml.Node {
	_, v := scalarField(n, key)
	if v == nil || v.Kind != yaml.MappingNode {
		return nil
	}
	return v
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return strconv.Quote(n.Value)
	case "!!null":
		return "null"
	}
	return n.Value
}

var bigInt = regexp.MustCompile(`^[-+]?[0-9]+$`)

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// joinKey appends a map key: labels.app, or tags["k8s.io/app"] when the key
// would not read as one path element.
func joinKey(path, key string) string {
	if plainKey.MatchString(key) {
		return joinField(path, key)
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// fieldInfo is a field of a struct as decoded: its json name and index path.
type fieldInfo struct {
	name      string
	index     []int
	omitEmpty bool
}

type structInfo struct {
	list   []fieldInfo // in declaration order, inline fields flattened in place
	byName map[string]fieldInfo
	names  []string
}

var structCache sync.Map // reflect.Type -> *structInfo

// structFields lists the fields of t by their json tags, so that one set of
// names serves YAML and JSON. Embedded structs tagged ",inline" (or untagged)
// contribute their fields in place; fields tagged "-" are skipped.
func structFields(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{byName: map[string]fieldInfo{}}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(index[:len(index):len(index)], i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct && (name == "" || opts == "inline") {
				walk(f.Type, idx)
				continue
			}
			if name == "" {
				name = f.Name
			}
			fi := fieldInfo{name: name, index: idx, omitEmpty: strings.Contains(","+opts+",", ",omitempty,")}
			si.list = append(si.list, fi)
			si.byName[name] = fi
			si.names = append(si.names, name)
		}
	}
	walk(t, nil)
	actual, _ := structCache.LoadOrStore(t, si)
	return actual.(*structInfo)
}
