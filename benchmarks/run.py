"""The benchmark harness: smr and its peers on the same data, in the same run, checked.

    python -m benchmarks.run                      # the full run (what `make bench` does)
    python -m benchmarks.run --scale 0.02         # every size x 0.02: a quick smoke run
    python -m benchmarks.run --systems smr,plain --workloads wordcount,tiny --scale 0.002

Each program runs as its own command (``smr run ...`` or ``python -m benchmarks.peers ...``), one
at a time, and is timed from start to exit, so start-up (a JVM, a worker pool) counts as a user
would feel it. Every output is checked against the hand-written script's (or the first that ran)
and a run that disagrees is marked wrong. Writes BENCHMARKS.md and a PNG chart.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from . import datagen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
GB = 2**30
MB = 2**20
SIZES = {"wordcount": 1 * GB, "query2a": 2 * GB, "terasort": 1 * GB}
SCALING = [0.25, 0.5, 1, 2]  # GB of text
TINY_TASKS = 1000
TINY_FILE = 96
PEERS = ["plain", "lithops", "dask", "spark", "duckdb"]
FRAMEWORKS = ["lithops", "dask", "spark"]
SYSTEMS = ["smr", *PEERS]
WORKLOADS = ["wordcount", "query2a", "terasort", "tiny", "scaling"]
LABELS = {"smr": "smr (record API)", "smr-columnar": "smr (columnar)",
          "plain": "hand-written multiprocessing + Counter", "lithops": "Lithops (localhost)",
          "dask": "Dask bag (processes)", "spark": "PySpark local[2]", "duckdb": "DuckDB"}
SMR_JOBS = {
    "wordcount": [("smr", "wordcount.py"), ("smr-columnar", "wordcount_columnar.py")],
    "query2a": [("smr", "query2a.py"), ("smr-columnar", "query2a_columnar.py")],
    "terasort": [("smr", "terasort.py"), ("smr-columnar", "terasort_columnar.py")],
    "tiny": [("smr", "wordcount.py")],
}
TITLES = {"wordcount": "Word count", "query2a": "BDB query 2a", "terasort": "TeraSort",
          "tiny": "Tiny map tasks"}


@dataclass
class Result:
    workload: str
    system: str
    seconds: float | None = None
    status: str = "ok"  # ok | wrong | failed | unsupported | timeout | skipped
    note: str = ""
    input_bytes: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    @property
    def mbps(self) -> float | None:
        if self.seconds and self.input_bytes and self.status == "ok":
            return self.input_bytes / MB / self.seconds
        return None


# -- running --------------------------------------------------------------------------------
def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_cmd(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    t = time.perf_counter()
    # Its own session, so a timeout ends the program's workers too (Spark's JVM, pools).
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return time.perf_counter() - t, -1, f"timed out after {timeout:.0f} s"
    return time.perf_counter() - t, p.returncode, err if p.returncode else ""


def run_smr(workload: str, system: str, job: str, inputs: str, out: str, work: str,
            reducers: int, timeout: float, extra: list[str] = ()) -> Result:
    smr = os.path.join(os.path.dirname(sys.executable), "smr")
    cmd = [smr, "run", os.path.join(EXAMPLES, job), "--input", inputs, "--output", out,
           "--work-dir", work, "--reducers", str(reducers), "--overwrite", *extra]
    secs, code, err = run_cmd(cmd, timeout)
    r = Result(workload, system, secs, output=out)
    if code != 0:
        r.status, r.note = ("timeout" if code == -1 else "failed"), _tail(err)
        return r
    with open(os.path.join(out, "_SUCCESS")) as f:
        r.summary = json.load(f)
    r.summary["task_memory"] = task_memory(work, r.summary["job_id"])
    return r


def run_peer(workload: str, system: str, inputs: str, out: str, timeout: float) -> Result:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "benchmarks.peers", system, workload, inputs, out]
    secs, code, err = run_cmd(cmd, timeout, env={"PYSPARK_PYTHON": sys.executable})
    r = Result(workload, system, secs, output=out)
    if code == 3:
        r.seconds, r.status, r.note = None, "unsupported", _tail(err).replace("UNSUPPORTED: ", "")
    elif code != 0:
        r.status, r.note = ("timeout" if code == -1 else "failed"), _tail(err)
    return r


def task_memory(work: str, job_id: str) -> dict[str, Any]:
    """Peak resident MB per task, from the commit records, against the function's memory."""
    peaks, limit = [], 0
    base = os.path.join(work, "jobs", job_id)
    for dirpath, _, files in os.walk(base):
        if os.path.basename(dirpath).endswith("-done"):
            for name in files:
                with open(os.path.join(dirpath, name)) as f:
                    m = json.load(f)["metrics"]
                peaks.append(m.get("peak_rss_mb", 0))
                limit = m.get("memory_mb", limit)
    return {"tasks": len(peaks), "max_peak_rss_mb": max(peaks, default=0),
            "memory_mb": limit, "within": all(p <= limit for p in peaks)}


# -- checking -------------------------------------------------------------------------------
def read_pairs(out: str) -> list[tuple[Any, Any]]:
    pairs = []
    for name in sorted(os.listdir(out)):
        if name.startswith("part-"):
            with open(os.path.join(out, name), encoding="utf-8") as f:
                for line in f:
                    k, v = line.rstrip("\n").split("\t")
                    pairs.append((json.loads(k), json.loads(v)))
    return pairs


def same_result(workload: str, got: list, ref: list) -> str:
    """'' when they agree, else what differs."""
    if workload == "terasort":
        return ""  # checked against the input digest instead
    g, r = dict(got), dict(ref)
    if len(g) != len(got):
        return "a key appears twice"
    if set(g) != set(r):
        return f"{len(set(g) ^ set(r))} keys differ"
    for k, v in r.items():
        if workload == "query2a":
            if not math.isclose(g[k], v, rel_tol=1e-9, abs_tol=1e-6):
                return f"sum for {k!r} is {g[k]} not {v}"
        elif g[k] != v:
            return f"count for {k!r} is {g[k]} not {v}"
    return ""


def tera_digest(pairs_or_lines) -> tuple[int, int]:
    n = s = 0
    for rec in pairs_or_lines:
        n += 1
        s += zlib.crc32(rec.encode())
    return n, s


def check_terasort(out: str, input_dir: str) -> str:
    pairs = read_pairs(out)
    keys = [k for k, _ in pairs]
    if any(keys[i] > keys[i + 1] for i in range(len(keys) - 1)):
        return "output is not globally sorted"
    got = tera_digest(k + v for k, v in pairs)
    want = tera_digest(line.rstrip("\n") for p in sorted(os.listdir(input_dir))
                       if not p.startswith(".") for line in open(os.path.join(input_dir, p)))
    return "" if got == want else f"records differ from the input ({got[0]} vs {want[0]})"


def check(results: list[Result], workload: str, input_dir: str) -> None:
    ran = [r for r in results if r.status == "ok"]
    if workload == "terasort":
        for r in ran:
            bad = check_terasort(r.output, input_dir)
            r.status, r.note = ("wrong", bad) if bad else ("ok", "globally sorted, same records as the input")
        return
    ref = next((r for r in ran if r.system == "plain"), ran[0] if ran else None)
    if ref is None:
        return
    ref_pairs = read_pairs(ref.output)
    for r in ran:
        if r is not ref:
            bad = same_result(workload, read_pairs(r.output), ref_pairs)
            if bad:
                r.status, r.note = "wrong", bad
    for r in ran:
        if r.status == "ok":
            r.note = r.note or f"agrees with {LABELS[ref.system] if r is not ref else 'itself (reference)'}"


# -- the run ---------------------------------------------------------------------------------
def subset_dir(root: str, name: str, files: list[str]) -> str:
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for f in files:
        os.symlink(f, os.path.join(d, os.path.basename(f)))
    return d


def data_files(d: str) -> list[str]:
    return sorted(os.path.join(d, f) for f in os.listdir(d) if not f.startswith("."))


def dir_bytes(d: str) -> int:
    return sum(os.path.getsize(f) for f in data_files(d))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", 1)),
                    help="multiply every data size (default 1: 1 GB text, 2 GB uservisits, ...)")
    ap.add_argument("--systems", default=os.environ.get("BENCH_SYSTEMS", ",".join(SYSTEMS)))
    ap.add_argument("--workloads", default=os.environ.get("BENCH_WORKLOADS", ",".join(WORKLOADS)))
    ap.add_argument("--tiny-tasks", type=int, default=int(os.environ.get("BENCH_TINY_TASKS", TINY_TASKS)))
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "bench"))
    ap.add_argument("--report", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--chart", default=os.path.join(ROOT, "benchmarks", "results.png"))
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""),
                    help="a line for the report (e.g. other load on the machine)")
    args = ap.parse_args(argv)
    systems = args.systems.split(",")
    workloads = args.workloads.split(",")
    unknown = [s for s in systems if s not in SYSTEMS] + [w for w in workloads if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown system or workload: {', '.join(unknown)}")
    data = os.path.abspath(args.data)
    runs = os.path.join(data, "runs")
    shutil.rmtree(runs, ignore_errors=True)
    os.makedirs(runs)
    results: list[Result] = []
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    text_size = int(max(SCALING) * GB * args.scale)
    text_dir = uv_dir = tera_dir = None
    if {"wordcount", "scaling"} & set(workloads):
        log(f"generating {text_size / MB:.0f} MB of text")
        text_dir = datagen.text(data, text_size, 8)
    if "query2a" in workloads:
        log("generating uservisits")
        uv_dir = datagen.uservisits(data, int(SIZES["query2a"] * args.scale), 4)
    if "terasort" in workloads:
        log("generating TeraSort records")
        tera_dir = datagen.terasort(data, int(SIZES["terasort"] * args.scale), 4)

    def bench(workload: str, input_dir: str, reducers: int, extra: list[str] = ()) -> None:
        size = dir_bytes(input_dir)
        batch = []
        for system in systems:
            if system == "smr":
                for label, job in SMR_JOBS[workload]:
                    log(f"{workload}: {label}")
                    r = run_smr(workload, label, job, input_dir, os.path.join(runs, f"{workload}-{label}"),
                                os.path.join(runs, "work"), reducers, args.timeout, extra)
                    r.input_bytes = size
                    batch.append(r)
                    log(f"  -> {r.status} {r.seconds or 0:.2f}s {r.note[:120]}")
                continue
            else:
                log(f"{workload}: {system}")
                batch.append(run_peer(workload, system, input_dir,
                                      os.path.join(runs, f"{workload}-{system}"), args.timeout))
            batch[-1].input_bytes = size
            log(f"  -> {batch[-1].status} {batch[-1].seconds or 0:.2f}s {batch[-1].note[:120]}")
        check(batch, workload, input_dir)
        results.extend(batch)

    if "wordcount" in workloads:
        files = data_files(text_dir)
        bench("wordcount", subset_dir(data, "text-wordcount", files[:4]), 2)
    if "query2a" in workloads:
        bench("query2a", uv_dir, 2)
    if "terasort" in workloads:
        bench("terasort", tera_dir, 8)
    if "tiny" in workloads:
        tiny_dir = datagen.tiny(data, args.tiny_tasks, TINY_FILE)
        bench("tiny", tiny_dir, 2, ["--split-size", str(TINY_FILE)])
    scaling: list[Result] = []
    if "scaling" in workloads and "smr" in systems:
        files = data_files(text_dir)
        for gb in SCALING:
            n = max(1, int(round(len(files) * gb / max(SCALING))))
            d = subset_dir(data, f"text-scaling-{n}", files[:n])
            for label, job in SMR_JOBS["wordcount"]:
                log(f"scaling {gb} GB x {args.scale}: {label}")
                r = run_smr(f"scaling-{n}", label, job, d, os.path.join(runs, f"scaling-{n}-{label}"),
                            os.path.join(runs, "work"), 2, args.timeout)
                r.input_bytes = dir_bytes(d)
                scaling.append(r)
    shutil.rmtree(os.path.join(runs, "work"), ignore_errors=True)
    report = write_report(args, results, scaling, time.time() - started)
    with open(args.report, "w") as f:
        f.write(report)
    try:
        write_chart(args.chart, results, scaling)
    except ImportError as e:
        log(f"no chart ({e})")
    log(f"wrote {args.report} and {args.chart}")
    # A wrong answer anywhere, or smr not finishing, fails the run; a peer that times out or
    # fails is a row of the table, not a failure of the harness.
    bad = [r for r in results + scaling
           if r.status == "wrong" or (r.system.startswith("smr") and r.status not in
                                      ("ok", "unsupported", "skipped"))]
    return 1 if bad else 0


# -- the report ------------------------------------------------------------------------------
def _fmt_s(r: Result) -> str:
    return f"{r.seconds:.2f}" if r.seconds is not None and r.status in ("ok", "wrong") else "—"


def best_peer(rows: list[Result], among: list[str]) -> Result | None:
    ok = [r for r in rows if r.system in among and r.status == "ok"]
    return min(ok, key=lambda r: r.seconds) if ok else None


def targets(results: list[Result]) -> list[tuple[str, str, bool | None]]:
    by = {(r.workload, r.system): r for r in results}

    def t(w: str, s: str) -> float | None:
        r = by.get((w, s))
        return r.seconds if r and r.status == "ok" else None

    out: list[tuple[str, str, bool | None]] = []

    def add(name: str, a: float | None, b: float | None, limit: float, faster: bool) -> None:
        if a is None or b is None:
            out.append((name, "not measured", None))
            return
        ratio = a / b if not faster else b / a
        ok = ratio <= limit if not faster else ratio >= limit
        out.append((name, f"{ratio:.2f}x", ok))

    add("record word count within 1.2x of the hand-written script (time ratio)",
        t("wordcount", "smr"), t("wordcount", "plain"), 1.2, False)
    add("columnar word count >= 3x faster than the hand-written script",
        t("wordcount", "smr-columnar"), t("wordcount", "plain"), 3.0, True)
    q = [s for s in ("smr", "smr-columnar") if t("query2a", s) is not None]
    add("query 2a within 2x of DuckDB (best smr variant, time ratio)",
        min((t("query2a", s) for s in q), default=None), t("query2a", "duckdb"), 2.0, False)
    for w in ("wordcount", "query2a", "terasort", "tiny"):
        rows = [r for r in results if r.workload == w]
        fw = best_peer(rows, FRAMEWORKS)
        for s in ("smr", "smr-columnar"):
            if (w, s) in by:
                add(f"{TITLES[w]}: {LABELS[s]} >= 2x faster than the fastest framework"
                    f" ({LABELS[fw.system] if fw else 'none ran'})",
                    t(w, s), fw.seconds if fw else None, 2.0, True)
    return out


def write_report(args: Any, results: list[Result], scaling: list[Result], total: float) -> str:
    lines = ["# Benchmarks", "",
             f"Generated by `make bench` (`python -m benchmarks.run --scale {args.scale:g}`) on "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; the whole run took "
             f"{total / 60:.1f} min.", "",
             f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"{platform.platform()}. Every system uses 2 worker processes (the cores), runs "
             "one at a time, and is timed from command start to exit (start-up included). "
             "smr runs with its defaults on the local function host (1024 MB, concurrency 2).", ""]
    if args.note:
        lines += [f"**Note:** {args.note}", ""]
    lines += ["Ratio = wall time / wall time of the fastest peer that ran (below 1 is faster "
              "than every peer). MB/s = input MiB / wall second.", ""]
    for w in ("wordcount", "query2a", "terasort", "tiny"):
        rows = [r for r in results if r.workload == w]
        if not rows:
            continue
        size = rows[0].input_bytes
        extra = f", {args.tiny_tasks} files of {TINY_FILE} B, one map task each" if w == "tiny" else ""
        lines += [f"## {TITLES[w]} ({size / MB:,.0f} MiB{extra})", "",
                  "| system | wall s | MB/s | ratio to best peer | check |",
                  "|---|---:|---:|---:|---|"]
        best = best_peer(rows, PEERS)
        for r in rows:
            ratio = f"{r.seconds / best.seconds:.2f}" if best and r.status == "ok" else "—"
            mbps = f"{r.mbps:.1f}" if r.mbps else "—"
            status = {"ok": "", "unsupported": "cannot run: ", "wrong": "WRONG: ",
                      "failed": "FAILED: ", "timeout": "TIMEOUT: "}[r.status]
            lines.append(f"| {LABELS[r.system]} | {_fmt_s(r)} | {mbps} | {ratio} | "
                         f"{status}{r.note.replace('|', '/')} |")
        lines.append("")
    if scaling:
        lines += ["## Scaling: word count", "",
                  "| system | input MiB | wall s | MB/s | s per GiB | map tasks | max task peak RSS MB | function memory MB | within memory |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in scaling:
            if r.status != "ok":
                lines.append(f"| {LABELS[r.system]} | {r.input_bytes / MB:,.0f} | — | — | — | — | — | — | {r.status}: {r.note} |")
                continue
            m = r.summary["task_memory"]
            lines.append(f"| {LABELS[r.system]} | {r.input_bytes / MB:,.0f} | {r.seconds:.2f} | "
                         f"{r.mbps:.1f} | {r.seconds / (r.input_bytes / GB):.1f} | "
                         f"{r.summary['tasks']['map']} | {m['max_peak_rss_mb']:.0f} | "
                         f"{m['memory_mb']} | {'yes' if m['within'] else 'NO'} |")
        lines.append("")
        for s in ("smr", "smr-columnar"):
            rs = [r for r in scaling if r.system == s and r.status == "ok"]
            if len(rs) >= 2:
                per = [r.seconds / r.input_bytes for r in rs]
                lines.append(f"{LABELS[s]}: seconds per byte vary by {max(per) / min(per):.2f}x "
                             f"from {rs[0].input_bytes / MB:,.0f} to {rs[-1].input_bytes / MB:,.0f} MiB "
                             "(1.00x is perfectly linear; the fixed start-up cost weighs most on the smallest run).")
        lines.append("")
    tg = targets(results)
    if tg:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---:|---|"]
        for name, value, ok in tg:
            lines.append(f"| {name} | {value} | {'—' if ok is None else ('yes' if ok else 'NO')} |")
        lines.append("")
    lines += [f"![chart](benchmarks/{os.path.basename(args.chart)})", ""]
    return "\n".join(lines)


def write_chart(path: str, results: list[Result], scaling: list[Result]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ws = [w for w in ("wordcount", "query2a", "terasort", "tiny") if any(r.workload == w for r in results)]
    n = len(ws) + (1 if scaling else 0)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(4.2 * max(n, 1), 4.2), squeeze=False)
    colors = {"smr": "#1f77b4", "smr-columnar": "#08306b", "plain": "#7f7f7f", "lithops": "#ff7f0e",
              "dask": "#2ca02c", "spark": "#d62728", "duckdb": "#9467bd"}
    for ax, w in zip(axes[0], ws):
        rows = [r for r in results if r.workload == w]
        names = [LABELS[r.system].split(" (")[0].replace("hand-written multiprocessing + Counter", "script")
                 + (" col." if r.system == "smr-columnar" else "") for r in rows]
        vals = [r.seconds if r.status == "ok" else 0 for r in rows]
        ax.bar(range(len(rows)), vals, color=[colors[r.system] for r in rows])
        for i, r in enumerate(rows):
            if r.status != "ok":
                ax.text(i, 0, "n/a" if r.status == "unsupported" else r.status, ha="center",
                        va="bottom", rotation=90, fontsize=8)
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(TITLES[w])
        ax.set_ylabel("wall seconds (lower is better)")
    if scaling:
        ax = axes[0][-1]
        for s in ("smr", "smr-columnar"):
            rs = [r for r in scaling if r.system == s and r.status == "ok"]
            ax.plot([r.input_bytes / GB for r in rs], [r.seconds for r in rs], "o-",
                    color=colors[s], label=LABELS[s])
        ax.set_xlabel("input GiB")
        ax.set_ylabel("wall seconds")
        ax.set_title("Word count scaling")
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
