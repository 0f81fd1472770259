#!/usr/bin/python3
"""Reads hex frames (one per line) of `stats` messages from stdin, decodes
them exactly as a Locust 2.12.1 master does (Message.unserialize), checks
their shape against Locust's own TypedDicts, merges them the way the
master's worker_report listener does, and prints a JSON summary."""
import json
import sys

from locust.rpc.protocol import Message
from locust.stats import RequestStats, StatsEntry, StatsEntryDict, StatsError, StatsErrorDict

entry_keys = list(StatsEntryDict.__annotations__.keys())
error_keys = list(StatsErrorDict.__annotations__.keys())
st = RequestStats()
problems = []
user_counts = []
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = Message.unserialize(bytes.fromhex(line))
    if msg.type != "stats":
        problems.append("type %r" % msg.type)
    data = msg.data
    for key in ("stats", "stats_total", "errors", "user_classes_count", "user_count"):
        if key not in data:
            problems.append("missing " + key)
    for e in data["stats"] + [data["stats_total"]]:
        if list(e.keys()) != entry_keys:
            problems.append("entry keys %r" % list(e.keys()))
        for k in ("response_times", "num_reqs_per_sec", "num_fail_per_sec"):
            if not all(isinstance(x, int) for x in e[k].keys()):
                problems.append(k + " keys are not int")
    for e in data["stats"]:
        if e["num_requests"] == 0 and e["num_failures"] == 0:
            problems.append("empty entry sent: " + e["name"])
    # locust.stats.setup_distributed_stats_event_listeners.on_worker_report
    for stats_data in data["stats"]:
        entry = StatsEntry.unserialize(stats_data)
        request_key = (entry.name, entry.method)
        if request_key not in st.entries:
            st.entries[request_key] = StatsEntry(st, entry.name, entry.method, use_response_times_cache=True)
        st.entries[request_key].extend(entry)
    for error_key, error in data["errors"].items():
        if list(error.keys()) != error_keys:
            problems.append("error keys %r" % list(error.keys()))
        if error_key not in st.errors:
            st.errors[error_key] = StatsError.unserialize(error)
        else:
            st.errors[error_key].occurrences += error["occurrences"]
    st.total.extend(StatsEntry.unserialize(data["stats_total"]))
    user_counts.append([data["user_classes_count"], data["user_count"]])

def summary(e):
    return {
        "num_requests": e.num_requests,
        "num_failures": e.num_failures,
        "min_response_time": e.min_response_time,
        "max_response_time": e.max_response_time,
        "median_response_time": e.median_response_time,
        "avg_response_time": e.avg_response_time,
        "p95": e.get_response_time_percentile(0.95),
        "total_content_length": e.total_content_length,
    }

print(json.dumps({
    "problems": problems,
    "total": summary(st.total),
    "entries": {"%s %s" % (k[1], k[0]): summary(v) for k, v in st.entries.items()},
    "errors": {k: {"name": e.to_name(), "error": e.error, "occurrences": e.occurrences} for k, e in st.errors.items()},
    "user_counts": user_counts,
}))
