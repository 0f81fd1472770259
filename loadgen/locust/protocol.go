package locust

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Message types of the Locust 2 master/worker protocol.
const (
	// Worker → master.
	TypeClientReady      = "client_ready"
	TypeHeartbeat        = "heartbeat"
	TypeSpawning         = "spawning"
	TypeSpawningComplete = "spawning_complete"
	TypeStats            = "stats"
	TypeClientStopped    = "client_stopped"
	TypeQuit             = "quit"
	TypeException        = "exception"
	// Master → worker.
	TypeAck       = "ack"
	TypeSpawn     = "spawn"
	TypeStop      = "stop"
	TypeReconnect = "reconnect"
)

// ClientReadyVersion is the client_ready payload a worker sends: -1, the
// value a 2.x master accepts from any worker without a version check
// (Debian's Locust reports an empty version, so sending a version string
// would not help).
const ClientReadyVersion = -1

// Message is one protocol message: a msgpack array [type, data, node_id],
// exactly as Locust's rpc.protocol.Message serializes it.
//
// Data is what msgpack gives: nil, bool, int64 (uint64 above MaxInt64),
// float64, string, []byte, []any, map[string]any (map[any]any when a key
// is not a string) on decoding; on encoding any of those, Dict (a map with
// its key order kept), the Go integer and float types and maps with
// string or integer keys.
type Message struct {
	Type   string
	Data   any
	NodeID string
}

// Encode packs the message as Locust does: msgpack array of three, str
// strings, ints in their smallest format, floats as float64.
func (m Message) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.SetSortMapKeys(true)
	if err := enc.EncodeArrayLen(3); err != nil {
		return nil, err
	}
	if err := enc.EncodeString(m.Type); err != nil {
		return nil, err
	}
	if err := encodeValue(enc, m.Data); err != nil {
		return nil, fmt.Errorf("locust: encode %s data: %w", m.Type, err)
	}
	if err := enc.EncodeString(m.NodeID); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeMessage unpacks a frame as Locust's Message.unserialize does
// (strings as str, any map key type); like Python's msgpack it refuses
// trailing bytes.
func DecodeMessage(frame []byte) (Message, error) {
	r := bytes.NewReader(frame)
	dec := msgpack.NewDecoder(r)
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return Message{}, fmt.Errorf("locust: not a message (want a msgpack array of 3): %w", err)
	}
	if n != 3 {
		return Message{}, fmt.Errorf("locust: not a message: msgpack array of %d items, want 3", n)
	}
	typ, err := decodeValue(dec, 0)
	if err != nil {
		return Message{}, fmt.Errorf("locust: message type: %w", err)
	}
	data, err := decodeValue(dec, 0)
	if err != nil {
		return Message{}, fmt.Errorf("locust: message data: %w", err)
	}
	node, err := decodeValue(dec, 0)
	if err != nil {
		return Message{}, fmt.Errorf("locust: message node_id: %w", err)
	}
	if r.Len() != 0 {
		return Message{}, fmt.Errorf("locust: %d bytes of extra data after the message", r.Len())
	}
	m := Message{Data: data}
	var ok bool
	if m.Type, ok = typ.(string); !ok {
		return Message{}, fmt.Errorf("locust: message type is %T, want a string", typ)
	}
	switch v := node.(type) {
	case string:
		m.NodeID = v
	case nil:
	default:
		return Message{}, fmt.Errorf("locust: message node_id is %T, want a string", node)
	}
	return m, nil
}

const maxDepth = 64

// decodeValue reads any msgpack value into the plain Go types Message
// documents.
func decodeValue(dec *msgpack.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deeply")
	}
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		keys := make([]any, 0, n)
		vals := make([]any, 0, n)
		allStrings := true
		for range n {
			k, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			if _, ok := k.(string); !ok {
				allStrings = false
			}
			keys = append(keys, k)
			vals = append(vals, v)
		}
		if allStrings {
			m := make(map[string]any, n)
			for i, k := range keys {
				m[k.(string)] = vals[i]
			}
			return m, nil
		}
		m := make(map[any]any, n)
		for i, k := range keys {
			switch k.(type) {
			case []any, map[string]any, map[any]any, []byte:
				return nil, fmt.Errorf("unhashable map key of type %T", k)
			}
			m[k] = vals[i]
		}
		return m, nil
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, n)
		for range n {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case c == msgpcode.Bin8 || c == msgpcode.Bin16 || c == msgpcode.Bin32:
		return dec.DecodeBytes()
	}
	v, err := dec.DecodeInterfaceLoose()
	if err != nil {
		return nil, err
	}
	if u, ok := v.(uint64); ok && u <= math.MaxInt64 {
		return int64(u), nil
	}
	return v, nil
}

// Item is one key and value of a Dict.
type Item struct {
	Key   string
	Value any
}

// Dict is a map that encodes its items in their order, as a Python dict
// keeps insertion order, so that frames match Python's byte for byte.
type Dict []Item

// Get returns the value of key.
func (d Dict) Get(key string) (any, bool) {
	for _, it := range d {
		if it.Key == key {
			return it.Value, true
		}
	}
	return nil, false
}

// countsByInt is a {int: int} dict (response_times, num_reqs_per_sec),
// encoded with its keys in increasing order.
type countsByInt map[int64]int64

func encodeValue(enc *msgpack.Encoder, v any) error {
	switch x := v.(type) {
	case nil:
		return enc.EncodeNil()
	case Dict:
		if err := enc.EncodeMapLen(len(x)); err != nil {
			return err
		}
		for _, it := range x {
			if err := enc.EncodeString(it.Key); err != nil {
				return err
			}
			if err := encodeValue(enc, it.Value); err != nil {
				return fmt.Errorf("%s: %w", it.Key, err)
			}
		}
		return nil
	case countsByInt:
		return encodeSortedMap(enc, x, enc.EncodeInt, enc.EncodeInt)
	case map[string]int:
		return encodeSortedMap(enc, x, enc.EncodeString, func(v int) error { return enc.EncodeInt(int64(v)) })
	case map[string]any:
		return encodeSortedMap(enc, x, enc.EncodeString, func(v any) error { return encodeValue(enc, v) })
	case []any:
		if err := enc.EncodeArrayLen(len(x)); err != nil {
			return err
		}
		for _, e := range x {
			if err := encodeValue(enc, e); err != nil {
				return err
			}
		}
		return nil
	case float32:
		return enc.EncodeFloat64(float64(x))
	case float64:
		return enc.EncodeFloat64(x)
	case string:
		// Python decodes str strictly: a frame with bytes that are not
		// UTF-8 would be dropped (RPCReceiveError) by the master.
		return enc.EncodeString(strings.ToValidUTF8(x, "\uFFFD"))
	}
	// Integers, bool, []byte and other maps: msgpack's own encoding with
	// compact ints and sorted map keys.
	return enc.Encode(v)
}

// Ack is the payload of ack: the worker's index among the master's
// workers.
type Ack struct {
	Index int
	// HasIndex is false for masters before 2.11, which send no index.
	HasIndex bool
}

// ParseAck reads an ack payload ({"index": n}).
func ParseAck(data any) Ack {
	m, ok := data.(map[string]any)
	if !ok {
		return Ack{}
	}
	n, ok := toInt(m["index"])
	if !ok {
		return Ack{}
	}
	return Ack{Index: int(n), HasIndex: true}
}

// Spawn is the payload of spawn: the absolute number of users per class
// this worker must run.
type Spawn struct {
	// Timestamp is the master's time.time() when it sent the message; a
	// worker drops a spawn not newer than the last one.
	Timestamp float64
	// UserClassesCount is the absolute number of users per class.
	UserClassesCount map[string]int
	// Host is the master's --host or the web form's host ("" for None).
	Host string
	// StopTimeout is the master's --stop-timeout in seconds (0 for None).
	StopTimeout float64
	// ParsedOptions are the master's options (custom ones included).
	ParsedOptions map[string]any
}

// ParseSpawn reads a spawn payload.
func ParseSpawn(data any) (Spawn, error) {
	m, ok := data.(map[string]any)
	if !ok {
		return Spawn{}, fmt.Errorf("spawn data is %T, want a dict", data)
	}
	var s Spawn
	if s.Timestamp, ok = toFloat(m["timestamp"]); !ok {
		return Spawn{}, fmt.Errorf("spawn has no numeric timestamp (got %v)", m["timestamp"])
	}
	ucc, ok := m["user_classes_count"].(map[string]any)
	if !ok {
		return Spawn{}, fmt.Errorf("spawn has no user_classes_count dict of class names (got %T)", m["user_classes_count"])
	}
	s.UserClassesCount = make(map[string]int, len(ucc))
	for name, v := range ucc {
		n, ok := toInt(v)
		if !ok || n < 0 {
			return Spawn{}, fmt.Errorf("spawn: user count of %s is %v, want a whole number ≥ 0", name, v)
		}
		s.UserClassesCount[name] = int(n)
	}
	switch h := m["host"].(type) {
	case string:
		s.Host = h
	case nil:
	default:
		return Spawn{}, fmt.Errorf("spawn: host is %T, want a string or None", h)
	}
	if st, ok := toFloat(m["stop_timeout"]); ok && st > 0 {
		s.StopTimeout = st
	}
	s.ParsedOptions, _ = m["parsed_options"].(map[string]any)
	return s, nil
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case int:
		return int64(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), true
		}
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}

// PyRepr returns Python's repr() of a str: the quotes and escapes Python
// chooses. A Python worker sends its errors as repr(error), so a string
// error "HTTP 500" travels as "'HTTP 500'".
func PyRepr(s string) string {
	quote := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Go strings may hold bytes that are not UTF-8; Python str
			// cannot: show them as surrogate escapes would print.
			fmt.Fprintf(&b, `\udc%02x`, s[i])
			i++
			continue
		}
		i += size
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(quote):
			b.WriteByte('\\')
			b.WriteByte(quote)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x7f:
			b.WriteRune(r)
		case !unicode.IsPrint(r):
			switch {
			case r <= 0xff:
				fmt.Fprintf(&b, `\x%02x`, r)
			case r <= 0xffff:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// encodeSortedMap writes a map with its keys in order, so a frame is the
// same bytes every time.
func encodeSortedMap[K cmp.Ordered, V any](enc *msgpack.Encoder, m map[K]V, key func(K) error, value func(V) error) error {
	if err := enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := key(k); err != nil {
			return err
		}
		if err := value(m[k]); err != nil {
			return fmt.Errorf("%v: %w", k, err)
		}
	}
	return nil
}
