"""AWS commands: ``smr lambda-deploy``, ``lambda-undeploy``, ``iam-policy``, ``local-lambda``."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from .cli import SmrError, main
from .config import CONFIG_SUFFIXES, ConfigError, load_config_file, make_settings


@main.command("local-lambda")
@click.option("--port", "-p", type=int, default=9001, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--memory", type=int, default=1024, show_default=True, help="MB per function.")
@click.option("--timeout", type=float, default=900, show_default=True,
              help="Seconds per invocation.")
@click.option("--concurrency", "-c", type=int, default=2, show_default=True,
              help="Invocations at once; synchronous calls beyond it get 429 (throttled).")
@click.option("--function", "functions", multiple=True,
              help="Serve only this function name (repeatable; default: any name).")
def local_lambda(port: int, memory: int, timeout: float, concurrency: int,
                 functions: tuple[str, ...]) -> None:
    """Serve AWS Lambda's Invoke API on 127.0.0.1, running invocations in the local host.

    Point smr (or any boto3 client) at it with --lambda-endpoint http://127.0.0.1:PORT, or
    AWS_ENDPOINT_URL_LAMBDA. Workers share this machine's files and environment.
    """
    from .platforms.local_lambda import LocalLambdaServer
    try:
        server = LocalLambdaServer(port=port, memory_mb=memory, timeout_s=timeout,
                                   concurrency=concurrency, functions=list(functions))
    except OSError as e:
        raise SmrError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
    click.echo(f"serving the Lambda Invoke API on {server.url} "
               f"({memory} MB, {timeout:g} s, concurrency {concurrency}); Ctrl-C stops",
               err=True)
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def settings_from(job: str, flags: dict[str, Any]) -> Any:
    """Settings for a deploy command: a job reference or config file, plus flags."""
    values: dict[str, Any] = {}
    source = ""
    if job.endswith(CONFIG_SUFFIXES):
        values = load_config_file(job)
        source = job
    else:
        values["job"] = job
    values.update({k: v for k, v in flags.items() if v is not None and v != ()})
    if "input" in values and isinstance(values["input"], tuple):
        values["input"] = list(values["input"])
    return make_settings(source, **values)


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


__all__ = ["local_lambda", "settings_from", "ConfigError"]
