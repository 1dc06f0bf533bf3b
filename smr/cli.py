"""The ``smr`` command."""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import click

from .config import CONFIG_SUFFIXES, ConfigError, load_config_file, make_settings, parse_size

log = logging.getLogger("smr.cli")


class SmrError(click.ClickException):
    """Printed as one line on stderr; exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"smr: error: {self.format_message()}", err=True)


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="smr")
def main(verbose: int) -> None:
    """smr: MapReduce on serverless functions."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("job")
@click.option("--input", "-i", "inputs", multiple=True, help="Input URL (file, dir, glob); repeatable.")
@click.option("--output", "-o", help="Output URL (a directory or s3://bucket/prefix).")
@click.option("--work-dir", help="URL for the job's working data (default ~/.smr/work).")
@click.option("--reducers", "-r", type=int, help="Number of reduce partitions.")
@click.option("--memory", type=int, help="Memory per function, MB (128-10240).")
@click.option("--timeout", type=float, help="Seconds per invocation (at most 900).")
@click.option("--concurrency", "-c", type=int, help="Functions running at once.")
@click.option("--split-size", callback=_size, help="Bytes per map split, e.g. 64MB.")
@click.option("--platform", type=click.Choice(["local", "inline", "lambda"]),
              help="Where functions run: local (function host, default), inline (threads, for "
                   "debugging) or lambda (AWS Lambda; see docs/aws.md).")
@click.option("--lambda-function", help="Lambda function name or ARN (default smr-worker).")
@click.option("--lambda-endpoint", help="Lambda API endpoint URL, e.g. a `smr local-lambda` server.")
@click.option("--lambda-invocation", type=click.Choice(["sync", "event"]),
              help="Lambda invocation: sync (RequestResponse, default) or event (fire-and-forget).")
@click.option("--region", help="AWS region (default: boto3's configuration).")
@click.option("--s3-endpoint", help="S3 endpoint URL for S3-compatible stores "
              "(default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL).")
@click.option("--md5-prefixes", is_flag=True, default=None,
              help="Prefix intermediate keys with md5 hex (MARLA) to spread S3 request load.")
@click.option("--max-attempts", type=int, help="Attempts per task before the job fails.")
@click.option("--bad-records", type=click.Choice(["fail", "skip"]), help="Policy for bad records.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing output.")
@click.option("--keep-intermediates", is_flag=True, default=None, help="Keep shuffle data.")
@click.option("--fanout", type=click.Choice(["direct", "tree"]),
              help="Invoke mappers directly (default) or as MARLA's logarithmic tree.")
@click.option("--reduce", type=click.Choice(["shuffle", "tree"]),
              help="R reducers (shuffle, default) or rounds of tree reduction (associative jobs).")
@click.option("--inject-faults", metavar="SPEC",
              help='Inject faults, e.g. "kill=0.1,timeout=0.05,oom=0.05,store=0.05,'
                   'duplicate=0.1,seed=7" (rates per invocation / store request).')
@click.option("--speculative/--no-speculative", default=None,
              help="Start backup attempts for straggling tasks.")
@click.option("--speculative-after", type=float,
              help="Straggling = this many times the median task duration (default 2.0).")
@click.option("--json", "as_json", is_flag=True, help="Print the job summary as JSON on stdout.")
def run(job: str, inputs: tuple[str, ...], as_json: bool, **flags: Any) -> None:
    """Run JOB to completion.

    JOB is file.py, file.py:ClassName, package.module:ClassName, or a YAML/JSON config file that
    names one of these plus its settings (flags given here override the file).
    """
    from .driver import JobFailed, run_job
    from .jobload import JobLoadError
    from .planner import InputError
    from .secrets import scrub_text
    from .storage import StoreError

    try:
        values, source = job_values(job)
        if inputs:
            values["input"] = list(inputs)
        values.update({k: v for k, v in flags.items() if v is not None})
        settings = make_settings(source, **values)
        progress = make_progress(quiet=as_json)
        with progress:
            summary = run_job(settings.job or job, settings=settings, progress=progress)
    except (ConfigError, JobLoadError, InputError, StoreError) as e:
        raise SmrError(scrub_text(str(e))) from None
    except JobFailed as e:
        if e.traceback:
            log.info("task traceback:\n%s", scrub_text(e.traceback))
        message = f"job {e.job_id} failed: {e}" if e.job_id else str(e)
        raise SmrError(scrub_text(message)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(one_line_summary(summary))


def job_values(job: str) -> tuple[dict[str, Any], str]:
    """The settings JOB stands for (a config file's fields, or the job reference alone), and
    the config file's name for error messages ("" for none)."""
    if not job.endswith(CONFIG_SUFFIXES):
        return {"job": job}, ""
    values = load_config_file(job)
    if not values.get("job"):
        raise ConfigError(f"{job}: field 'job': missing (name the job, e.g. wordcount.py)")
    return values, job


def one_line_summary(s: dict[str, Any]) -> str:
    mb = s["input"]["bytes"] / 2**20
    secs = max(s["wall_seconds"], 1e-9)
    faults = s.get("faults_injected") or {}
    injected = (" (faults injected: " + ", ".join(f"{k} {v}" for k, v in faults.items()) + ")"
                if faults else "")
    return (f"job {s['job_id']} {s['status']} in {secs:.2f} s: {s['tasks']['map']} map + "
            f"{s['tasks']['reduce']} reduce tasks, {mb:.1f} MB in ({mb / secs:.1f} MB/s), "
            f"{s['records']['output']} records out, {s['retries']} retries{injected}, "
            f"est. ${s['cost_usd']:.6f} on AWS -> {s['output']}")


def make_progress(quiet: bool) -> Any:
    from .progress import LogProgress, NullProgress, RichProgress
    if quiet:
        return NullProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return LogProgress()


@main.command()
@click.argument("kind", type=click.Choice(["text", "uservisits"]))
@click.option("--size", required=True, callback=_size, help="Total size, e.g. 100MB, 1GB.")
@click.option("--output", "-o", required=True, help="Directory to write into.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--files", type=int, default=1, show_default=True)
def generate(kind: str, size: int, output: str, seed: int, files: int) -> None:
    """Generate deterministic test data: Zipf text or Big Data Benchmark uservisits."""
    from . import generate as gen
    t = time.time()
    fn = gen.generate_text if kind == "text" else gen.generate_uservisits
    paths = fn(output, size, seed=seed, files=files)
    click.echo(f"wrote {len(paths)} file(s), {size / 2**20:.1f} MB of {kind} to {output} "
               f"in {time.time() - t:.1f} s")


from . import cli_coord  # noqa: E402,F401
from . import cli_store  # noqa: E402,F401  (smr ls / cat / cp)

if __name__ == "__main__":
    main()
from . import cli_aws  # noqa: E402,F401
