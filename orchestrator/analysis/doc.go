// Package analysis decides as Flagger does: it is Flagger's canary state
// machine (pkg/controller/scheduler.go's advanceCanary and its helpers),
// driven one analysis tick at a time by an engine, with no I/O of its
// own. Everything it reads or changes in the world — routes, workloads,
// metric queries, webhooks — goes through the Env the engine gives it, so
// the embedded engine (real HTTP, wall clock), the simulator (virtual
// time) and tests (scripted results) all get the same decisions, the
// same status fields and the same event texts.
//
// Behaviour follows Flagger v1.44 by default; Version "1.36" selects the
// differences of Flagger v1.36.1, the release the end-to-end tests run
// (Promoting resets the status weight, no handleFailedPromotion, inline
// queries always fail, skipAnalysis runs no post-rollout hooks, a range
// vector result crashes the controller).
package analysis
