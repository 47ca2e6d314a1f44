package policy

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Encode returns o as one YAML document. Keys come in struct order under
// their json names, empty omitempty fields are left out and maps are sorted,
// so equal objects encode to equal bytes. An empty apiVersion or kind is
// filled in, so the output always decodes.
func Encode(o Object) ([]byte, error) {
	return encodeNodes([]*yaml.Node{objectNode(o)})
}

// EncodeObjects returns objs as a stream of YAML documents separated by
// "---", in the order given.
func EncodeObjects(objs []Object) ([]byte, error) {
	nodes := make([]*yaml.Node, len(objs))
	for i, o := range objs {
		nodes[i] = objectNode(o)
	}
	return encodeNodes(nodes)
}

// EncodeList returns objs as one document of kind List, the form of exports.
func EncodeList(objs []Object) ([]byte, error) {
	items := &yaml.Node{Kind: yaml.SequenceNode}
	for _, o := range objs {
		items.Content = append(items.Content, objectNode(o))
	}
	if len(objs) == 0 {
		items.Style = yaml.FlowStyle
	}
	list := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		str("apiVersion"), str(APIVersion), str("kind"), str(string(KindList)), str("items"), items,
	}}
	return encodeNodes([]*yaml.Node{list})
}

// EncodeSet returns every object of s (All order) as a YAML stream. Rule ids
// are not objects and are left out.
func EncodeSet(s *Set) ([]byte, error) { return EncodeObjects(s.All()) }

func encodeNodes(nodes []*yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, n := range nodes {
		if err := enc.Encode(n); err != nil {
			return nil, fmt.Errorf("policy: encode: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("policy: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// objectNode builds the node of o with its header completed from its type.
func objectNode(o Object) *yaml.Node {
	v := reflect.ValueOf(o).Elem()
	cp := reflect.New(v.Type()).Elem()
	cp.Set(v) // shallow: only the header is changed below
	h := cp.Addr().Interface().(Object).GetHeader()
	if h.APIVersion == "" {
		h.APIVersion = APIVersion
	}
	if h.Kind == "" {
		h.Kind = KindOf(o)
	}
	return toNode(cp)
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// toNode is the inverse of the strict decoder's walk.
func toNode(v reflect.Value) *yaml.Node {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
		}
		return toNode(v.Elem())
	case reflect.String:
		return str(v.String())
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(v.Uint(), 10)}
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for i := 0; i < v.Len(); i++ {
			n.Content = append(n.Content, toNode(v.Index(i)))
		}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			if a.String() < b.String() {
				return -1
			}
			if a.String() > b.String() {
				return 1
			}
			return 0
		})
		for _, k := range keys {
			n.Content = append(n.Content, str(k.String()), toNode(v.MapIndex(k)))
		}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range structFields(v.Type()).list {
			fv := v.FieldByIndex(f.index)
			if f.omitEmpty && isEmpty(fv) {
				continue
			}
			n.Content = append(n.Content, str(f.name), toNode(fv))
		}
		return n
	}
	panic("policy: encode: unsupported field type " + v.Type().String())
}

// isEmpty is encoding/json's notion of empty for omitempty.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint() == 0
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	}
	return false
}
