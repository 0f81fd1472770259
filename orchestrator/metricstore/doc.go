// Package metricstore is canarylab's embedded Prometheus: a TSDB head, the
// PromQL engine, a scraper for the text exposition format and the
// /api/v1/query endpoint, all taken from github.com/prometheus/prometheus so
// that the numbers a canary analysis sees are the numbers a real Prometheus
// would compute.
//
// Two engines share it. The local engine scrapes real pods over loopback
// HTTP on the wall clock ([Store.Scrape], [Scraper]); the simulation engine
// appends synthetic samples at virtual timestamps ([Store.Append],
// [Store.Appender]) and opens one Store per run, so opening and closing is
// kept cheap: a Store is a bare TSDB head without WAL, compaction or
// background goroutines, whose chunks stay in memory.
//
// [Store.Query] reproduces Flagger's Prometheus metric provider
// (pkg/metrics/providers/prometheus.go, RunQuery) on top of an instant
// query: whitespace is collapsed, the last series of the vector wins, an
// empty vector or NaN is [ErrNoValuesFound], a matrix is [ErrMultipleValues]
// and a scalar fails like Flagger's JSON unmarshaling does. Because the
// Prometheus HTTP API does not sort instant vectors (it returns them in
// evaluation order, which for a selector over a TSDB head is the order in
// which series were created), "the last one wins" would depend on append
// order; metricstore sorts instant vectors by label set (labels.Compare,
// the order Prometheus uses for range-query matrices) so the pick is
// reproducible, except after sort(), sort_desc(), sort_by_label() and
// sort_by_label_desc(), whose order is kept as Prometheus keeps it.
package metricstore
