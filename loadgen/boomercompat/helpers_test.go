package boomercompat

import (
	"fmt"
	"math"
	"math/rand/v2"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

func sqrt(x float64) float64 { return math.Sqrt(x) }

func fmtType(v any) string { return fmt.Sprintf("%T", v) }
