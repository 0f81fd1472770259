package loadgen

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

// Stage is one step of a closed-model schedule, as a Locust
// LoadTestShape's tick gives it: for Duration, move to Users users at
// SpawnRate users a second (0: at once), then hold.
type Stage struct {
	Duration  time.Duration
	Users     int
	SpawnRate float64
}

// ParseStage reads "DURATION:USERS[:SPAWN_RATE]", such as "1m:50:10".
func ParseStage(s string) (Stage, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Stage{}, fmt.Errorf("stage %q: write duration:users[:spawn rate], such as 1m:50:10", s)
	}
	d, err := behavior.ParseDuration(parts[0])
	if err != nil || d <= 0 {
		return Stage{}, fmt.Errorf("stage %q: the duration must be positive, such as 30s", s)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 0 {
		return Stage{}, fmt.Errorf("stage %q: users must be a whole number, 0 or more", s)
	}
	st := Stage{Duration: d, Users: n}
	if len(parts) == 3 {
		if st.SpawnRate, err = strconv.ParseFloat(parts[2], 64); err != nil || st.SpawnRate < 0 {
			return Stage{}, fmt.Errorf("stage %q: the spawn rate must be a number of users a second, 0 or more", s)
		}
	}
	return st, nil
}

// rampTick is how often a ramp adjusts the user count.
const rampTick = 100 * time.Millisecond

// RunClosed moves the pool through the stages (users split over the
// plan's classes by weight), then stops every user. It returns when the
// last stage ends or ctx does; either way no user outlives it.
func RunClosed(ctx context.Context, users *Users, p plan.Plan, stages []Stage) error {
	defer users.StopAll()
	cur := users.Total()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, s := range stages {
		start := time.Now()
		from := cur
		// Ramp in steps of one user where the clock allows (1 ms), not
		// of a tenth of the spawn rate: 10,000 users a second started
		// 1,000 at a time send 1,000 requests at once, and open and keep
		// ~1,000 connections.
		tick := rampTick
		if s.SpawnRate > 0 {
			tick = min(tick, max(time.Millisecond, time.Duration(float64(time.Second)/s.SpawnRate)))
		}
		for {
			elapsed := time.Since(start)
			target := s.Users
			if s.SpawnRate > 0 {
				step := int(s.SpawnRate * elapsed.Seconds())
				if from < s.Users {
					target = min(s.Users, from+step)
				} else {
					target = max(s.Users, from-step)
				}
			}
			if target != cur {
				if err := users.SetCounts(ctx, Distribute(p, target), ""); err != nil {
					return err
				}
				cur = target
			}
			if elapsed >= s.Duration {
				break
			}
			wait := tick
			if cur == s.Users {
				wait = s.Duration - elapsed // ramped: hold to the stage's end
			}
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		}
	}
	return nil
}
