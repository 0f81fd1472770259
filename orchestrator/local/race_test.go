//go:build race

package local

// raceEnabled: the race detector slows the mock servers, the router and
// the scrapes five to ten times, too much for time-scaled end-to-end runs
// at full load; see TestReadyScenarios.
const raceEnabled = true
