package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The decoder walks the yaml.Node tree against the Config value by reflection,
// using the yaml struct tags. It does what yaml.Node.Decode does, plus what that
// cannot: it rejects unknown keys, names the dotted key and line of every wrong
// type, and carries on so that one run reports every mistake. It knows nothing
// about pgcloak: a new section is a new struct field (struct, pointer, map with
// string keys, slice, or scalar) plus a check in validate.go.

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decode stores n into v, reporting problems under key. Values the file leaves
// out keep what v already holds, which is how defaults apply.
func (l *loader) decode(n *yaml.Node, v reflect.Value, key string) {
	n = resolve(n)
	if n.ShortTag() == "!!null" {
		// "key:" with nothing after it keeps the default. For an optional
		// section it still switches the section on, so a bare "tls:" is
		// reported as missing its files rather than silently ignored.
		if v.Kind() == reflect.Pointer && v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return
	}
	switch t := v.Type(); {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			l.wrongType(n, key, "a duration such as 10s")
			return
		}
		d, err := ParseDuration(n.Value)
		if err != nil {
			l.at(n.Line, key, "%v", err)
			return
		}
		v.SetInt(int64(d))
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType) && (n.Kind == yaml.ScalarNode || t.Kind() != reflect.Struct):
		// A struct that also reads a one-word form (an access rule) is
		// decoded field by field when written as a mapping.
		if n.Kind != yaml.ScalarNode {
			l.wrongType(n, key, "a single value")
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			l.at(n.Line, key, "%v", err)
		}
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		l.decode(n, v.Elem(), key)
	case reflect.Struct:
		l.decodeStruct(n, v, key)
	case reflect.Map:
		l.decodeMap(n, v, key)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			l.wrongType(n, key, "a list")
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content)))
		for i, item := range n.Content {
			l.decode(item, v.Index(i), key+"["+strconv.Itoa(i)+"]")
		}
	case reflect.String:
		// Any scalar is text: "listen: 6432" is a string here, and the check
		// for listen then says what is wrong with it.
		if n.Kind != yaml.ScalarNode {
			l.wrongType(n, key, "a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			l.wrongType(n, key, "true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			l.wrongType(n, key, "an integer")
			return
		}
		v.SetInt(i)
	default:
		// A Config field of a kind added without teaching the decoder; the
		// tests decode every field, so this cannot reach a user.
		panic(fmt.Sprintf("config: field %q has unsupported type %s", key, v.Type()))
	}
}

// decodeStruct decodes a mapping into the fields named by yaml tags.
func (l *loader) decodeStruct(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		l.wrongType(n, key, "a mapping")
		return
	}
	names, index := yamlFields(v.Type())
	l.eachKey(n, key, func(k string, kn, vn *yaml.Node, path string) {
		i := slices.Index(names, k)
		if i < 0 {
			l.at(kn.Line, path, "unknown key; %sknown keys: %s", suggest(k, names), strings.Join(names, ", "))
			return
		}
		l.decode(vn, v.Field(index[i]), path)
	})
}

// decodeMap decodes a mapping into a map with string keys; any key is allowed,
// and each value is checked like a field, e.g. tables: {public.t: {col: {...}}}.
func (l *loader) decodeMap(n *yaml.Node, v reflect.Value, key string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		panic(fmt.Sprintf("config: field %q is a map without string keys", key))
	}
	if n.Kind != yaml.MappingNode {
		l.wrongType(n, key, "a mapping")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	l.eachKey(n, key, func(k string, _, vn *yaml.Node, path string) {
		mk := reflect.ValueOf(k).Convert(t.Key())
		elem := reflect.New(t.Elem()).Elem()
		if old := v.MapIndex(mk); old.IsValid() {
			elem.Set(old) // keep defaults a caller may have put in the map
		}
		l.decode(vn, elem, path)
		v.SetMapIndex(mk, elem)
	})
}

// eachKey calls fn for every key of mapping n, with the key's dotted path. It
// rejects keys that are not plain scalars and keys written twice (yaml.v3 does
// not when decoding into a Node, and the later value would silently win).
func (l *loader) eachKey(n *yaml.Node, key string, fn func(k string, kn, vn *yaml.Node, path string)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := resolve(n.Content[i]), n.Content[i+1]
		if kn.Kind != yaml.ScalarNode {
			l.at(kn.Line, key, "a key must be a plain name, got %s; write name: value", describe(kn))
			continue
		}
		path := joinKey(key, kn.Value)
		if first, dup := l.lines[path]; dup {
			l.at(kn.Line, path, "duplicate key (first at line %d); keep one of them", first)
			continue
		}
		l.lines[path] = kn.Line
		fn(kn.Value, kn, vn, path)
	}
}

func (l *loader) wrongType(n *yaml.Node, key, want string) {
	l.at(n.Line, key, "expected %s, got %s", want, describe(n))
}

// yamlFields lists the yaml names of t's tagged fields in declaration order
// (the order the error messages show), with their field indexes.
func yamlFields(t reflect.Type) (names []string, index []int) {
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
			index = append(index, i)
		}
	}
	return names, index
}

// suggest returns `did you mean "x"? ` for the known name closest to k within
// edit distance 2, or "".
func suggest(k string, names []string) string {
	best, bestDist := "", 3
	for _, name := range names {
		if d := editDistance(strings.ToLower(k), name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("did you mean %q? ", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes (keys are ASCII).
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// resolve follows YAML aliases (*name) to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// describe names what a node holds, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func joinKey(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

// parentKey drops the last element of a dotted key: "limits.login_timeout" -> "limits".
func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}
