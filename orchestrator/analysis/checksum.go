package analysis

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
)

// Checksum is a webhook payload's checksum: a short hash of the tracked
// configs and the last applied spec, the shape of Flagger's ComputeHash
// (FNV-32a, then encoded with Kubernetes' SafeEncodeString alphabet) but
// not byte-equal to it (Flagger hashes a go-spew dump of its struct).
// canarylab's engines have no pod template, so lastAppliedSpec is the
// revision string the engine tracks; equal inputs give equal checksums,
// which is all a hook may rely on.
func Checksum(trackedConfigs map[string]string, lastAppliedSpec string) string {
	h := fnv.New32a()
	for _, k := range slices.Sorted(maps.Keys(trackedConfigs)) {
		fmt.Fprintf(h, "%q:%q,", k, trackedConfigs[k])
	}
	fmt.Fprintf(h, "|%q", lastAppliedSpec)
	return safeEncode(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// safeEncodeAlphabet is Kubernetes' rand.SafeEncodeString alphabet: no
// vowels (no words) and no confusable characters.
const safeEncodeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

func safeEncode(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = safeEncodeAlphabet[int(c)%len(safeEncodeAlphabet)]
	}
	return string(b)
}
