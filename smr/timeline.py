"""``smr timeline``: every task attempt of a job as a bar over time, like Lithops' plots.

The top panel draws one bar per attempt (from its start to its end, coloured by phase; failed
attempts in red, attempts that never reported in grey), the bottom one the number of functions
running at each moment. Everything comes from the store (commit, run and failure records), so it
works for any job, from any process. matplotlib is an optional extra: ``pip install 'smr[plot]'``.
"""
from __future__ import annotations

from typing import Any

from .jobstate import JobState, iter_attempts, job_start_time
from .storage import Store

COLOURS = {"map": "#4C72B0", "reduce": "#55A868"}


def attempts(work: Store, job_id: str) -> list[dict[str, Any]]:
    """The job's task attempts, times relative to the job's start, in start order."""
    st = JobState(work, job_id)
    t0 = job_start_time(st.spec)
    rows = []
    for a in iter_attempts(st):
        end = a["end"]
        rows.append({**a, "start": a["start"] - t0, "end": None if end is None else end - t0})
    rows.sort(key=lambda a: (a["start"], a["phase"], a["task"]))
    return rows


def concurrency(rows: list[dict[str, Any]], until: float) -> tuple[list[float], list[int]]:
    """A step function: how many attempts were running at each moment."""
    changes = []
    for a in rows:
        changes.append((a["start"], 1))
        changes.append((a["end"] if a["end"] is not None else until, -1))
    changes.sort()
    xs, ys, n = [0.0], [0], 0
    for t, d in changes:
        n += d
        xs.append(t)
        ys.append(n)
    return xs, ys


def draw_timeline(work: Store, job_id: str, path: str) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = attempts(work, job_id)
    until = max([a["end"] or a["start"] for a in rows] + [0.0])
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5),
                                      gridspec_kw={"height_ratios": [3, 1]})
    for y, a in enumerate(rows):
        end = a["end"] if a["end"] is not None else until
        if a["outcome"] == "committed":
            colour = COLOURS.get(a["phase"], "#8172B2")
        elif a["outcome"] == "lost":
            colour = "#AAAAAA"
        else:
            colour = "#C44E52"
        top.barh(y, max(end - a["start"], until * 1e-3), left=a["start"], height=0.8,
                 color=colour, edgecolor="none")
        if a.get("retries"):
            top.annotate(f"{a['retries']} retr{'y' if a['retries'] == 1 else 'ies'}",
                         (end, y), fontsize=6, va="center", xytext=(2, 0),
                         textcoords="offset points")
    top.set_ylabel("task attempt")
    top.set_title(f"job {job_id}: {len(rows)} task attempts")
    top.legend(handles=[Patch(color=COLOURS["map"], label="map"),
                        Patch(color=COLOURS["reduce"], label="reduce"),
                        Patch(color="#C44E52", label="failed"),
                        Patch(color="#AAAAAA", label="no report")],
               loc="lower right", fontsize=8)
    xs, ys = concurrency(rows, until)
    bottom.step(xs, ys, where="post", color="#333333")
    bottom.fill_between(xs, ys, step="post", alpha=0.3, color="#333333")
    bottom.set_ylabel("running")
    bottom.set_xlabel("seconds since the job started")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(rows)
