#!/usr/bin/env python3
"""Collects bench/results/*.json (and the crash and fuzz logs bench/run-all.sh writes) into one
table: bench/results/summary.md and summary.json. Missing results are left out, not invented."""
import json
import pathlib
import re

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def get(value, *keys):
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            return None
    return value


def num(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def lat(phase, key="latencyMillis"):
    l = get(phase, key) or {}
    if not l:
        return "–"
    return f"{num(l.get('p50'), 2)} / {num(l.get('p99'), 2)} / {num(l.get('p999'), 2)}"


rows = []


def row(workload, backend, rate, latency, ratio, note=""):
    rows.append({"workload": workload, "backend": backend, "rate": rate, "latency": latency,
                 "ratio": ratio, "note": note})


for backend in ("sqlite", "postgres"):
    t = load(f"transactions-{backend}")
    if t:
        row("fsync 4 KiB (start)", backend, f"{num(get(t, 'fsync', 'impliedCommitsPerSecond'))} syncs/s",
            lat(get(t, "fsync")), "")
        row("Raw earn rows, 1 bill per commit", backend,
            f"{num(get(t, 'raw', 'perCommit', 'billsPerSecond'))} bills/s", "", "baseline")
        row("Raw earn rows, 100 bills per commit", backend,
            f"{num(get(t, 'raw', 'batch100', 'billsPerSecond'))} bills/s", "", "baseline")
        row("HTTP + JSON ceiling, c16 (in process)", backend,
            f"{num(get(t, 'httpCeiling', 'cN', 'okPerSecond'))} req/s", "", "baseline")
        for name, label in (("closedC1", "W1 add transaction, c1"), ("closedCN", "W1 add transaction, c16")):
            row(label, backend, f"{num(get(t, 'w1', name, 'okPerSecond'))} bills/s",
                lat(get(t, "w1", name)), "")
        for phase in get(t, "w1", "open") or []:
            row(f"W1 open loop at {phase.get('loadOfClosedLoopMax', 0) * 100:.0f}% of max", backend,
                f"{num(phase.get('okPerSecond'))} bills/s", lat(phase), "")
        row("W1 max / raw 100 per commit (target ≥ 0.5 on SQLite)", backend, "", "",
            num(get(t, "ratios", "w1MaxToRawBatch100"), 3))
        row("W1 max / raw 1 per commit", backend, "", "", num(get(t, "ratios", "w1MaxToRawPerCommit"), 3))
    if backend == "sqlite":
        before = load("transactions-sqlite-no-group-commit")
        if before:
            row("W1 c16 without group commit (before)", backend,
                f"{num(get(before, 'w1', 'closedCN', 'okPerSecond'))} bills/s",
                lat(get(before, "w1", "closedCN")), num(get(before, "ratios", "w1MaxToRawBatch100"), 3),
                "ratio to raw 100 per commit")
    r = load(f"redemption-{backend}")
    if r:
        for name, label in (("uniformCN", "W2 redemption, uniform, c16"), ("hotCN", "W2 redemption, one hot customer, c16")):
            row(label, backend, f"{num(get(r, 'redeem', name, 'okPerSecond'))}/s",
                lat(get(r, "redeem", name)), "")
        row("W2 uniform max / raw 1 per commit", backend, "", "",
            num(get(r, "ratios", "uniformMaxToRawPerCommit"), 3))
    c = load(f"coupons-{backend}")
    if c:
        row("W4 coupon redemption, distinct codes, c16", backend,
            f"{num(get(c, 'redeem', 'closedCN', 'redemptionsPerSecond'))}/s",
            lat(get(c, "redeem", "closedCN")), num(get(c, "ratios", "redeemCNToRawCN"), 3),
            "ratio to raw rows, c16")
        race = get(c, "redeem", "singleCodeRace")
        if race:
            answers = (race.get("ok") or 0) + (race.get("errors") or 0)
            row("W4 single-code race, c16", backend,
                f"{num(answers / max(race.get('seconds') or 1, 1e-9))} answers/s", lat(race), "",
                f"{race.get('ok')} redeemed, {race.get('errors')} refused")
    w = load(f"workloads-{backend}")
    if w:
        row("HTTP ceiling over a socket (GET /healthz), c16", backend,
            f"{num(get(w, 'httpCeiling', 'okPerSecond'))} req/s", lat(get(w, "httpCeiling")), "baseline",
            get(w, "pinning") or "")
        row("Raw reads (same rows as W6), c16", backend,
            f"{num(get(w, 'rawReads', 'cN', 'okPerSecond'))}/s", lat(get(w, "rawReads", "cN")), "baseline")
        row("W6 reads, c16", backend, f"{num(get(w, 'w6', 'closedCN', 'okPerSecond'))}/s",
            lat(get(w, "w6", "closedCN")), num(get(w, "ratios", "w6MaxToRawReads"), 3), "ratio to raw reads")
        for phase in get(w, "w6", "open") or []:
            row(f"W6 open loop at {phase.get('loadOfClosedLoopMax', 0) * 100:.0f}%", backend,
                f"{num(phase.get('okPerSecond'))}/s", lat(phase), "")
        row("W7 mix, c16", backend, f"{num(get(w, 'w7', 'closedCN', 'okPerSecond'))}/s",
            lat(get(w, "w7", "closedCN")), num(get(w, "ratios", "w7MaxToAloneMix"), 3),
            "ratio to the same mix at each kind's rate alone")
        for phase in get(w, "w7", "open") or []:
            row(f"W7 open loop at {phase.get('loadOfClosedLoopMax', 0) * 100:.0f}%", backend,
                f"{num(phase.get('okPerSecond'))}/s", lat(phase), "")
    s = load(f"customer_search-{backend}")
    if s:
        api = s.get("apiMillis") or {}
        row(f"Customer search at {s.get('customers', 0):,} customers", backend, "",
            f"p50 {num(api.get('p50'), 2)} / p95 {num(api.get('p95'), 2)}", num(s.get("apiToRawP50"), 2),
            "ratio to the bare indexed SQL (p50)")

reliability = []
crash = RESULTS / "crash.log"
if crash.exists():
    for line in crash.read_text().splitlines():
        if line.startswith("crash test:"):
            reliability.append(line)
fuzz = RESULTS / "fuzz.log"
if fuzz.exists():
    for line in fuzz.read_text().splitlines():
        if line.startswith("== ") or re.match(r"^=+ .* in [0-9.]+s =+$", line):
            reliability.append(line)

out = ["# Benchmark summary", "",
       "Generated by `bench/summary.py` from `bench/results/` (run `bench/run-all.sh` to reproduce every figure).",
       "Latencies are p50 / p99 / p99.9 in milliseconds.", "",
       "| Workload | Backend | Rate | Latency | Ratio | Note |", "|---|---|---:|---|---:|---|"]
for r in rows:
    out.append(f"| {r['workload']} | {r['backend']} | {r['rate']} | {r['latency']} | {r['ratio']} | {r['note']} |")
if reliability:
    out += ["", "## Crash test and API fuzzing", ""] + [f"- {line}" for line in reliability]
(RESULTS / "summary.md").write_text("\n".join(out) + "\n")
(RESULTS / "summary.json").write_text(json.dumps({"rows": rows, "reliability": reliability}, indent=2) + "\n")
