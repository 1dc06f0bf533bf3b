"""``smr`` commands for jobs driven from the store: status, wait, jobs, resume, timeline, and
event triggers (deploy, undeploy, serve)."""
from __future__ import annotations

import json
import time
from typing import Any

import click

from .cli import SmrError, job_values, main, make_progress, one_line_summary


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
                     f"  {t['pending']:>5} pending  {t['failed']:>4} failed attempts")
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
    from . import layout
    from .jobstate import is_finished, status as job_status
    work = _open_work(work_dir, s3_endpoint)
    _require_job(work, job_id)
    deadline = None if timeout is None else time.time() + timeout
    delay = 0.05
    while True:
        # Two heads a poll; the full status (which reads every commit record) only at the end.
        finished = is_finished(work, job_id)
        failed = work.head(layout.failure_key(job_id)) is not None
        if finished or failed or (deadline is not None and time.time() > deadline):
            st = job_status(work, job_id)
            if st["phase"] == "succeeded":
                click.echo(f"job {job_id} succeeded in {st['elapsed_seconds']:.2f} s "
                           f"-> {st['output']}")
                return
            if st["phase"] == "failed":
                raise SmrError(f"job {job_id} failed: {st['error']}")
            click.echo(f"smr: error: job {job_id} still {st['phase']} after {timeout} s",
                       err=True)
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


# -- event triggers -------------------------------------------------------------------------------

@main.command()
@click.argument("job")
@click.option("--watch", required=True, help="Prefix whose new objects start jobs.")
@click.option("--output", "-o", required=True,
              help="Output prefix; each job writes under OUTPUT/<job id>/.")
@click.option("--name", help="Trigger name (default: from the job file).")
@click.option("--window", type=float, default=0.0, show_default=True,
              help="Seconds: one job for the objects arriving within a window (0: a job each).")
@click.option("--poll", is_flag=True, help="Watch by listing the prefix (stores without "
                                           "notifications, e.g. SeaweedFS).")
@click.option("--platform", type=click.Choice(["local", "lambda"]), default="local",
              show_default=True, help="Where the coordinator and tasks run.")
@work_dir_option
@endpoint_option
@click.option("--reducers", "-r", type=int, help="Number of reduce partitions.")
@click.option("--memory", type=int, help="Memory per function, MB (128-10240).")
@click.option("--timeout", type=float, help="Seconds per invocation (at most 900).")
@click.option("--concurrency", "-c", type=int, help="Functions running at once.")
@click.option("--split-size", help="Bytes per map split, e.g. 64MB.")
@click.option("--max-attempts", type=int, help="Attempts per task before the job fails.")
@click.option("--bad-records", type=click.Choice(["fail", "skip"]), help="Policy for bad records.")
@click.option("--fanout", type=click.Choice(["direct", "tree"]), help="Mapper fan-out.")
@click.option("--reduce", type=click.Choice(["shuffle", "tree"]), help="Reduce strategy.")
def deploy(job: str, watch: str, output: str, name: str | None, window: float, poll: bool,
           platform: str, work_dir: str | None, s3_endpoint: str | None, **flags: Any) -> None:
    """Register a trigger: every object created under --watch starts a run of JOB.

    JOB is file.py, file.py:Class, package.module:Class, or a YAML/JSON config file. The jobs are
    planned by a coordinator function, with no client; on the embedded store `smr serve` keeps
    the trigger live.
    """
    import os
    import re

    from .config import ConfigError, make_settings
    from .driver import _norm
    from .jobload import JobLoadError, load_job
    from .triggers import TriggerError, register
    try:
        values, source = job_values(job)
        for ignored in ("input", "output", "overwrite"):
            values.pop(ignored, None)  # a trigger's inputs and outputs come from events
        values.update({k: v for k, v in flags.items() if v is not None})
        if s3_endpoint:
            values["s3_endpoint"] = s3_endpoint
        values["work_dir"] = _work_dir(work_dir)
        settings = make_settings(source, **values)
        job_obj = load_job(settings.job or job)
        if name is None:
            stem = os.path.splitext(os.path.basename((settings.job or job).split(":")[0]))[0]
            name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-") or "trigger"
        work = _open_work(work_dir, s3_endpoint)
        reg = register(work, name=name, job=job_obj, settings=settings, watch=_norm(watch),
                       output=_norm(output), window=window, mode="poll" if poll else "auto",
                       platform=platform)
        if platform == "lambda":
            _deploy_lambda(reg, settings, work.url)
    except (ConfigError, JobLoadError, TriggerError) as e:
        raise SmrError(str(e)) from None
    how = {"notify": "store notifications", "poll": "polling"}[reg["mode"]]
    click.echo(f"trigger {reg['name']}: new objects under {reg['watch']} start {reg['job_class']} "
               f"jobs writing to {reg['output']}/<job id> ({how}"
               f"{', window %g s' % window if window else ''}); "
               + ("run `smr serve` to keep it live" if platform == "local" else "deployed"))


def _deploy_lambda(reg: dict[str, Any], settings: Any, work_url: str) -> None:
    """The AWS side of a lambda trigger: the function, its role and the bucket notification."""
    from .deploy.aws import DeployError, deploy
    from .deploy.package import PackageError
    try:
        deploy(registration=reg, settings=settings, work_dir=work_url,
               echo=lambda m: click.echo(m, err=True))
    except (DeployError, PackageError) as e:
        # Leave no registered trigger without the function that would serve it.
        from .storage import open_store
        from .triggers import unregister
        unregister(open_store(work_url, settings.store_options()), reg["name"])
        raise SmrError(f"trigger {reg['name']} not deployed: {e}") from None


@main.command()
@click.argument("name")
@work_dir_option
@endpoint_option
def undeploy(name: str, work_dir: str | None, s3_endpoint: str | None) -> None:
    """Remove the trigger NAME: new objects no longer start jobs (running jobs go on)."""
    from .triggers import TriggerError, unregister
    work = _open_work(work_dir, s3_endpoint)
    try:
        reg = unregister(work, name)
    except TriggerError as e:
        raise SmrError(str(e)) from None
    if reg.get("platform") == "lambda":
        from .deploy.aws import DeployError, undeploy as undeploy_aws
        try:
            undeploy_aws(registration=reg, work_dir=work.url,
                         echo=lambda m: click.echo(m, err=True))
        except DeployError as e:
            raise SmrError(f"trigger {name} removed, but not its AWS resources: {e}") from None
    click.echo(f"trigger {name} removed")


@main.command()
@work_dir_option
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def triggers(work_dir: str | None, s3_endpoint: str | None, as_json: bool) -> None:
    """The triggers registered in the work dir."""
    from .triggers import list_triggers
    regs = list_triggers(_open_work(work_dir, s3_endpoint))
    if as_json:
        click.echo(json.dumps(regs, indent=2, sort_keys=True))
        return
    for r in regs:
        click.echo(f"{r['name']}  {r['watch']} -> {r['output']}  {r['job_class']}  "
                   f"{r['mode']}{'  window %g s' % r['window'] if r.get('window') else ''}")


@main.command()
@work_dir_option
@endpoint_option
@click.option("--memory", type=int, default=1024, show_default=True, help="MB per function.")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="Seconds per invocation.")
@click.option("--concurrency", "-c", type=int, help="Functions running at once (default: CPUs).")
@click.option("--poll-interval", type=float, default=1.0, show_default=True,
              help="Seconds between listings of polled prefixes.")
@click.option("--idle-exit", type=float, help="Exit after this many seconds without work.")
@click.option("--no-recover", is_flag=True,
              help="Do not relaunch the unfinished tasks of event-started jobs on start.")
def serve(work_dir: str | None, s3_endpoint: str | None, memory: int, timeout: float,
          concurrency: int | None, poll_interval: float, idle_exit: float | None,
          no_recover: bool) -> None:
    """Keep the work dir's triggers live: deliver upload events and run the functions they start.

    On start it relaunches the unfinished tasks of event-started jobs, whose functions died with
    the previous server (committed tasks are not run again).
    """
    import signal

    from .config import default_concurrency
    from .serve import Server
    options = {"s3_endpoint": s3_endpoint} if s3_endpoint else {}
    server = Server(_work_dir(work_dir), store_options=options, memory_mb=memory,
                    timeout_s=timeout, concurrency=concurrency or default_concurrency(),
                    poll_interval=poll_interval)
    signal.signal(signal.SIGTERM, lambda *_: server.stop.set())
    click.echo(f"serving triggers of {server.work.url} (events queue {server.queue}); "
               "Ctrl-C stops", err=True)
    try:
        server.run(idle_exit=idle_exit, recover=not no_recover)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
