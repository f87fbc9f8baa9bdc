#!/usr/bin/env python3
"""Draws ns/page against N for ours, limit and naive from `shbuf bench --json`.

usage: bench/chart.py BENCH_JSON OUT_SVG   (needs gnuplot)
"""
import json
import os
import subprocess
import sys
import tempfile

# (operation, use, mode): the acquiring half of every operation; first-time
# attach and map are what a user sees first, repeated attach what a backend
# re-attaching a buffer sees.
PANELS = [
    ("frontend create", "", "frontend-alloc"),
    ("frontend create", "", "backend-alloc"),
    ("backend attach", "first-time", "frontend-alloc"),
    ("backend attach", "repeated", "frontend-alloc"),
    ("backend attach", "first-time", "backend-alloc"),
    ("frontend map", "first-time", "backend-alloc"),
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        data = json.load(f)
    m = data["machine"]
    title = f"shbuf on the sim provider: {m['cpu']}, {m['cores']} cores, {m['kernel']}"
    with tempfile.TemporaryDirectory() as tmp:
        script = [
            "set terminal svg size 1100,1200 dynamic font 'sans,11' background rgb 'white'",
            f"set output '{sys.argv[2]}'",
            f"set multiplot layout 3,2 title \"{title}\"",
            "set logscale xy",
            "set xlabel 'pages (N)'",
            "set ylabel 'ns per page'",
            "set key top right",
            "set grid",
            "set format y '%g'",
            "set xtics ('1' 1, '16' 16, '1024' 1024, '16384' 16384, '262144' 262144)",
        ]
        for i, (op, use, mode) in enumerate(PANELS):
            rows = sorted((r for r in data["rows"]
                           if r["op"] == op and r.get("use", "") == use and r["mode"] == mode),
                          key=lambda r: r["pages"])
            path = os.path.join(tmp, f"p{i}.dat")
            with open(path, "w") as out:
                for r in rows:
                    out.write(f"{r['pages']} {r['ours_ns_per_page']} {r['limit_ns_per_page']} "
                              f"{r['naive_ns_per_page']}\n")
            script += [
                f"set title '{op}{', ' + use if use else ''} ({mode})'",
                f"plot '{path}' using 1:2 with linespoints lw 2 pt 7 title 'ours', "
                f"'' using 1:3 with linespoints lw 2 pt 5 title 'limit (mmap + populate)', "
                f"'' using 1:4 with linespoints lw 2 pt 9 title 'naive (a call per page)'",
            ]
        script.append("unset multiplot")
        subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)


if __name__ == "__main__":
    main()
