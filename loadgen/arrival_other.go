//go:build !linux

package loadgen

import "context"

func newArrivalWaiter(ctx context.Context) arrivalWaiter { return newTimerWaiter(ctx) }
