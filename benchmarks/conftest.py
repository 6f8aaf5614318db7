"""Benchmark conventions and the ratio table.

Every benchmark sets ``benchmark.group`` (one group per workload) and names
its implementation, either with ``benchmark.extra_info["impl"]`` or in the test
name: a row whose impl or name says ``ours`` or ``interp_engine`` is ours (a
group may hold several variants of ours; ratios are taken against the fastest),
any other row is a baseline or peer. Work that
is scaled (a slow peer run on a subset) records ``extra_info["scale"]``: the
factor that turns the measured time into the time for the group's full
workload. Items per call, when meaningful, go to ``extra_info["items"]``.

At the end of the run a table gives, per group, each implementation's time
(median, scaled) and its ratio to ours (> 1: ours is faster).
"""
from __future__ import annotations

import math



def _rows(session):
    groups = {}
    for b in getattr(session, "benchmarks", []):
        if not b or not getattr(b.stats, "rounds", 0):
            continue
        info = b.extra_info or {}
        impl = info.get("impl", b.name)
        t = b.stats.median * float(info.get("scale", 1.0))
        mine = impl == "ours" or any(tag in str(impl) for tag in ("ours", "interp_engine"))
        groups.setdefault(b.group or b.name, []).append((impl, t, info, mine))
    return groups


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return
    groups = _rows(session)
    if not groups:
        return
    tr = terminalreporter
    tr.write_sep("=", "interp_engine: time per workload and ratio to ours (median; >1 = ours faster)")
    for group in sorted(groups):
        rows = groups[group]
        ours = [t for _, t, _, mine in rows if mine]
        ref = min(ours) if ours else math.nan
        tr.write_line(f"[{group}]")
        for impl, t, info, _ in sorted(rows, key=lambda r: r[1]):
            items = info.get("items")
            rate = f"  {items / t / 1e6:10.1f} M items/s" if items else ""
            ratio = t / ref if ours else math.nan
            note = f"  ({info['note']})" if info.get("note") else ""
            tr.write_line(f"  {impl:<34s} {t * 1e3:12.2f} ms  x{ratio:8.2f}{rate}{note}")
