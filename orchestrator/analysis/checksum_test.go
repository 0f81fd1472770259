package analysis

import (
	"strings"
	"testing"
)

func TestChecksum(t *testing.T) {
	a := Checksum(map[string]string{"configmap/a": "1", "secret/b": "2"}, "rev-1")
	if b := Checksum(map[string]string{"secret/b": "2", "configmap/a": "1"}, "rev-1"); a != b {
		t.Errorf("same inputs, different checksums %q %q", a, b)
	}
	for _, other := range []string{
		Checksum(map[string]string{"configmap/a": "1", "secret/b": "3"}, "rev-1"),
		Checksum(map[string]string{"configmap/a": "1", "secret/b": "2"}, "rev-2"),
		Checksum(nil, "rev-1"),
	} {
		if other == a {
			t.Errorf("different inputs, same checksum %q", a)
		}
	}
	if len(a) < 6 || strings.Trim(a, safeEncodeAlphabet) != "" {
		t.Errorf("checksum %q is not a short safe-encoded hash", a)
	}
}
