"""``smr`` commands for jobs driven from the store: status, wait, jobs, resume, timeline, and
event triggers (deploy, undeploy, serve)."""
from __future__ import annotations

import json
import time
from typing import Any

import click

from .cli import SmrError, main, make_progress, one_line_summary


def _work_dir(value: str | None) -> str:
    from .driver import _norm, default_work_dir
    return _norm(value or default_work_dir())


def _open_work(work_dir: str | None, s3_endpoint: str | None = None) -> Any:
    from .storage import open_store
    return open_store(_work_dir(work_dir), {"s3_endpoint": s3_endpoint} if s3_endpoint else {})


def _require_job(work: Any, job_id: str) -> None:
    from . import layout
    if work.head(layout.spec_key(job_id)) is None:
        raise SmrError(f"no job {job_id!r} in {work.url} (see `smr jobs --work-dir ...`)")


work_dir_option = click.option("--work-dir", help="The work dir the job lives in (default "
                                                  "$SMR_WORK_DIR or ~/.smr/work).")
endpoint_option = click.option("--s3-endpoint", help="S3 endpoint URL for S3-compatible stores.")


@main.command()
@click.argument("job_id")
@work_dir_option
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(job_id: str, work_dir: str | None, s3_endpoint: str | None, as_json: bool) -> None:
    """Phase, tasks done/running/failed, bytes, elapsed time and cost so far of JOB_ID."""
    from .jobstate import status as job_status
    work = _open_work(work_dir, s3_endpoint)
    _require_job(work, job_id)
    st = job_status(work, job_id)
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    click.echo(describe_status(st))


def describe_status(st: dict[str, Any]) -> str:
    lines = [f"job {st['job_id']} ({st['job']}): {st['phase']} after {st['elapsed_seconds']:.1f} s"
             f" [{st['start']} start, {st['fanout']} fan-out, {st['reduce']} reduce]"]
    for name, t in st["tasks"].items():
        lines.append(f"  {name:<16} {t['done']:>6}/{t['total']:<6} done  {t['running']:>5} running"
                     f"  {t['failed']:>4} failed")
    b = st["bytes"]
    lines.append(f"  bytes: {b['input']} in, {b['read']} read, {b['shuffled']} shuffled, "
                 f"{b['written']} written")
    lines.append(f"  cost so far: ${st['cost_usd']:.6f}  output: {st['output']}")
    if st.get("error"):
        lines.append(f"  error: {st['error']}")
    return "\n".join(lines)


@main.command()
@work_dir_option
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def jobs(work_dir: str | None, s3_endpoint: str | None, as_json: bool) -> None:
    """Every job in the work dir, oldest first."""
    from .jobstate import list_jobs
    found = list_jobs(_open_work(work_dir, s3_endpoint))
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    for j in found:
        click.echo(f"{j['job_id']}  {j['state']:<9}  {j.get('start', 'client'):<6}  "
                   f"{j.get('job', '')}  -> {j.get('output', '')}")


@main.command()
@click.argument("job_id")
@work_dir_option
@endpoint_option
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 2).")
def wait(job_id: str, work_dir: str | None, s3_endpoint: str | None,
         timeout: float | None) -> None:
    """Wait until JOB_ID succeeds (exit 0) or fails (exit 1)."""
    from .jobstate import status as job_status
    work = _open_work(work_dir, s3_endpoint)
    _require_job(work, job_id)
    deadline = None if timeout is None else time.time() + timeout
    delay = 0.05
    while True:
        st = job_status(work, job_id)
        if st["phase"] == "succeeded":
            click.echo(f"job {job_id} succeeded in {st['elapsed_seconds']:.2f} s -> {st['output']}")
            return
        if st["phase"] == "failed":
            raise SmrError(f"job {job_id} failed: {st['error']}")
        if deadline is not None and time.time() > deadline:
            click.echo(f"smr: error: job {job_id} still {st['phase']} after {timeout} s", err=True)
            raise SystemExit(2)
        time.sleep(delay)
        delay = min(1.0, delay * 1.5)


@main.command()
@click.argument("job_id")
@work_dir_option
@endpoint_option
@click.option("--platform", type=click.Choice(["local", "inline"]),
              help="Where the remaining tasks run (default: the job's own setting).")
@click.option("--concurrency", "-c", type=int, help="Functions running at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the job summary as JSON on stdout.")
def resume(job_id: str, work_dir: str | None, s3_endpoint: str | None, platform: str | None,
           concurrency: int | None, as_json: bool) -> None:
    """Finish JOB_ID, whose client died, from its state in the store.

    Committed tasks are not run again; tasks that were running are launched again.
    """
    from .coordinated import resume_job
    from .driver import JobFailed
    from .config import ConfigError
    from .storage import StoreError
    options = {"s3_endpoint": s3_endpoint} if s3_endpoint else {}
    try:
        progress = make_progress(quiet=as_json)
        with progress:
            summary = resume_job(job_id, _work_dir(work_dir), store_options=options,
                                 progress=progress, platform=platform,
                                 concurrency=concurrency)
    except (JobFailed, ConfigError, StoreError) as e:
        raise SmrError(str(e)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(one_line_summary(summary))


@main.command()
@click.argument("job_id")
@work_dir_option
@endpoint_option
@click.option("--output", "-o", "path", required=True, help="Image file to write (.png, .svg).")
def timeline(job_id: str, work_dir: str | None, s3_endpoint: str | None, path: str) -> None:
    """Draw every task of JOB_ID as a bar over time, with the functions running at once."""
    from .timeline import draw_timeline
    work = _open_work(work_dir, s3_endpoint)
    _require_job(work, job_id)
    try:
        n = draw_timeline(work, job_id, path)
    except ImportError as e:
        raise SmrError(f"smr timeline needs matplotlib: pip install 'smr[plot]' ({e})") from None
    click.echo(f"wrote {path}: {n} task attempts")
