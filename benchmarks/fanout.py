"""Fan-out: how long until the last of many trivial mappers has started, direct vs tree.

    python benchmarks/fanout.py [--tasks 1000] [--concurrency 8 32] [--repeat 1]

Each run maps ``--tasks`` one-line splits (tiny inputs, trivial map) on the local function host
and reads, from the commit records, each map task's time from job start to task start
(``since_job_start_s``). "direct" is the default client driver (a pool of invocations from the
client); "tree" is MARLA's logarithmic tree (the client invokes mapper 0, mapper n invokes
n + 2^k for every 2^k > n). Both are bounded by the host's concurrency: on a 2-core machine the
host cannot start more functions at once than it has slots, so the numbers measure invocation
overhead per wave, not what a thousand Lambda instances would do.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import smr  # noqa: E402
from smr import layout  # noqa: E402
from smr.driver import run_job  # noqa: E402
from smr.storage import open_store  # noqa: E402


class Trivial(smr.Job):
    ASSOCIATIVE = True

    def map(self, line):
        yield "n", 1

    def reduce(self, key, values):
        yield key, sum(values)


def one_run(tmp: str, tasks: int, fanout: str, concurrency: int, tag: str) -> dict:
    data = os.path.join(tmp, "in")
    if not os.path.isdir(data):
        os.makedirs(data)
        with open(os.path.join(data, "lines.txt"), "w") as f:
            f.write("xxxxxxx\n" * tasks)  # 8 bytes a line: split size 8 gives one task a line
    work = os.path.join(tmp, "work")
    t = time.time()
    s = run_job(Trivial(), input=[data], output=os.path.join(tmp, f"out-{tag}"), work_dir=work,
                split_size=8, reducers=2, concurrency=concurrency, fanout=fanout,
                keep_intermediates=False)
    wall = time.time() - t
    store = open_store(work)
    starts = []
    for info in store.list(layout.commit_prefix(s["job_id"], 0, "map")):
        starts.append(layout.read_json(store, info.key)["metrics"]["since_job_start_s"])
    assert len(starts) == tasks, (len(starts), tasks)
    assert s["records"]["output"] == 1
    return {"fanout": fanout, "concurrency": concurrency, "tasks": tasks,
            "first": min(starts), "median": statistics.median(starts), "last": max(starts),
            "map_s": s["phases"].get("map", 0.0), "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="smr-fanout-") as tmp:
        i = 0
        for c in args.concurrency:
            for fanout in ("direct", "tree"):
                for _ in range(args.repeat):
                    i += 1
                    rows.append(one_run(tmp, args.tasks, fanout, c, str(i)))
    print(f"{args.tasks} trivial map tasks on the local function host ({os.cpu_count()} CPUs); "
          "seconds from job start to task start")
    print(f"{'fan-out':<8} {'conc':>5} {'first':>8} {'median':>8} {'last':>8} {'job wall':>9}")
    for r in rows:
        print(f"{r['fanout']:<8} {r['concurrency']:>5} {r['first']:>8.3f} {r['median']:>8.3f} "
              f"{r['last']:>8.3f} {r['wall']:>9.2f}")


if __name__ == "__main__":
    main()
