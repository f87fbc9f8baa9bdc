#!/usr/bin/env python3
"""Prints the README's performance table (Markdown) from `shbuf bench --json`.

One row per operation, mode and use: at the smallest N its time per call (the
fixed cost), at the largest its time per page, each beside the limit and as
the ratio to it; and naive's cost per provider call at the largest N.

usage: bench/table.py BENCH_JSON
"""
import json
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        data = json.load(f)
    m = data["machine"]
    sizes = sorted({r["pages"] for r in data["rows"]})
    lo, hi = sizes[0], sizes[-1]
    print(f"{m['cpu']}, {m['cores']} cores, {m['kernel']}; "
          f"{'quick run' if data['quick'] else 'full run'}")
    print()
    print(f"| operation | use | mode | ours µs, N = {lo} | limit µs | ours/limit "
          f"| ours ns/page, N = {hi} | limit ns/page | ours/limit | naive ns/call |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    seen = []
    for r in data["rows"]:
        key = (r["op"], r.get("use", ""), r["mode"])
        if key not in seen:
            seen.append(key)
    for op, use, mode in seen:
        rows = {r["pages"]: r for r in data["rows"]
                if (r["op"], r.get("use", ""), r["mode"]) == (op, use, mode)}
        a, b = rows[lo], rows[hi]

        def num(v, fmt):
            return "n/a" if v is None else format(v, fmt)

        print(f"| {op} | {use or '—'} | {mode} "
              f"| {num(a['ours_ns'] and a['ours_ns'] / 1e3, '.1f')} "
              f"| {num(a['limit_ns'] and a['limit_ns'] / 1e3, '.1f')} "
              f"| {num(a['ours_over_limit'], '.2f')} "
              f"| {num(b['ours_ns_per_page'], '.1f')} | {num(b['limit_ns_per_page'], '.1f')} "
              f"| {num(b['ours_over_limit'], '.2f')} | {num(b['naive_ns_per_call'], '.0f')} |")


if __name__ == "__main__":
    main()
