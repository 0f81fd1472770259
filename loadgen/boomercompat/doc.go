// Package boomercompat runs boomer tasks (github.com/myzhan/boomer
// v1.6.0) as canarylab users, so that a team's boomer task code joins a
// Locust 2 master through canarylab's worker with no edits.
//
// boomer v1.6.0, the only release the module proxy serves, speaks Locust
// 1's protocol, which Locust 2 masters refuse; canarylab speaks Locust 2's
// (loadgen/locust). What moves over unchanged is boomer's programming
// model: a []*boomer.Task whose Fn calls boomer.RecordSuccess and
// boomer.RecordFailure (or publishes boomer's legacy "request_success" and
// "request_failure" events), TaskSets used as a Task's Fn, and boomer's rate
// limiters. A program moves over by calling this package's Run where it
// called boomer.Run; boomer's own command-line flags keep their meaning.
package boomercompat
