"""AWS commands: ``smr lambda-deploy``, ``lambda-undeploy``, ``iam-policy``, ``local-lambda``."""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

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


def settings_from(job: str | None, flags: dict[str, Any]) -> Any:
    """Settings for a deploy command: a job reference or config file, plus flags."""
    values: dict[str, Any] = {}
    source = ""
    if job and job.endswith(CONFIG_SUFFIXES):
        values = load_config_file(job)
        source = job
    elif job:
        values["job"] = job
    for k, v in flags.items():
        if v is None or v == ():
            continue
        values[k] = list(v) if isinstance(v, tuple) else v
    return make_settings(source, **values)


def _scope_options(fn: Callable) -> Callable:
    """The options that decide what the function may reach and how it is configured."""
    options = [
        click.argument("job", required=False),
        click.option("--input", "-i", "input", multiple=True,
                     help="Input URL the function reads (s3://...); repeatable."),
        click.option("--output", "-o", help="Output URL the function writes (s3://...)."),
        click.option("--work-dir", help="Work dir URL (s3://bucket/prefix); required."),
        click.option("--watch", help="Event trigger: new objects under this s3:// prefix run the job."),
        click.option("--function-name", "lambda_function",
                     help="Lambda function name (default smr-worker)."),
        click.option("--region", help="AWS region (default: boto3's configuration)."),
        click.option("--memory", type=int, help="Function memory, MB (128-10240)."),
        click.option("--timeout", type=float, help="Function timeout, seconds (at most 900)."),
        click.option("--requirement", "-R", "lambda_requirements", multiple=True,
                     help="Pure-Python distribution the job imports, to bundle; repeatable."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _deploy_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .deploy.aws import DeployError
        from .deploy.package import PackageError
        try:
            return fn(*args, **kwargs)
        except (ConfigError, DeployError, PackageError) as e:
            raise SmrError(str(e)) from None
    return wrapper


def _split(flags: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    watch = flags.pop("watch", None)
    return watch, flags


@main.command("iam-policy")
@_scope_options
@click.option("--account", default="${AWS::AccountId}", show_default=True,
              help="AWS account id to put in ARNs.")
@_deploy_errors
def iam_policy(job: str | None, account: str, **flags: Any) -> None:
    """Print the least-privilege IAM policy a deployment of JOB gets (JSON)."""
    from .deploy.aws import make_plan
    watch, flags = _split(flags)
    settings = settings_from(job, flags)
    region = settings.region or _default_region() or "${AWS::Region}"
    plan = make_plan(settings, watch=watch, region=region, account=account)
    click.echo(json.dumps(plan.policy, indent=2))


def _default_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


@main.command("lambda-deploy")
@_scope_options
@click.option("--role", "role_arn", help="Use this IAM role ARN instead of creating one.")
@click.option("--ephemeral-storage", "ephemeral_mb", type=int, default=512, show_default=True,
              help="/tmp size, MB (512-10240); reduce tasks spill there.")
@click.option("--runtime", help="Lambda runtime, e.g. python3.12 (default: this Python's).")
@click.option("--architecture", type=click.Choice(["x86_64", "arm64"]), default="x86_64",
              show_default=True)
@click.option("--columnar/--no-columnar", default=None,
              help="Bundle numpy and pyarrow for columnar jobs (map_batches); default: when "
                   "JOB is one.")
@click.option("--template-only", is_flag=True,
              help="Print a CloudFormation/SAM template instead of deploying.")
@click.option("--package-out", default="smr-lambda.zip", show_default=True,
              help="With --template-only: where to write the deployment package.")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment record as JSON.")
@_deploy_errors
def lambda_deploy(job: str | None, role_arn: str | None, ephemeral_mb: int,
                  runtime: str | None, architecture: str, columnar: bool | None,
                  template_only: bool,
                  package_out: str, as_json: bool, **flags: Any) -> None:
    """Deploy smr's worker (and JOB, if given) as a Lambda function.

    Creates the function, an IAM role scoped to the job's buckets and prefixes, and with
    --watch an S3 trigger merged into the bucket's notifications. Run again to update;
    `smr lambda-undeploy` removes what this created.
    """
    from .deploy import aws
    watch, flags = _split(flags)
    settings = settings_from(job, flags)
    if template_only:
        from .deploy.package import build_package
        from .deploy.template import ACCOUNT, REGION, template, to_yaml
        pkg = build_package(package_out, job=settings.job,
                            requirements=settings.lambda_requirements, runtime=runtime,
                            architecture=architecture, zip_limit=None, columnar=columnar)
        plan = aws.make_plan(settings, watch=watch, region=REGION, account=ACCOUNT,
                             ephemeral_mb=ephemeral_mb, runtime=runtime,
                             architecture=architecture, job_entry=pkg.job_entry)
        click.echo(to_yaml(template(plan)), nl=False)
        click.echo(f"wrote the package to {package_out} ({pkg.zipped_bytes / 2**20:.1f} MB); "
                   "upload it and pass CodeBucket/CodeKey", err=True)
        return
    record = aws.deploy(settings, watch=watch, role_arn=role_arn, ephemeral_mb=ephemeral_mb,
                        runtime=runtime, architecture=architecture, columnar=columnar,
                        echo=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
    else:
        click.echo(f"deployed {record['function_arn']}; run jobs with --platform lambda "
                   f"--lambda-function {record['function']}")


@main.command("lambda-undeploy")
@click.option("--function-name", default="smr-worker", show_default=True)
@click.option("--region", help="AWS region (default: boto3's configuration).")
@_deploy_errors
def lambda_undeploy(function_name: str, region: str | None) -> None:
    """Remove exactly what `smr lambda-deploy` created for FUNCTION (its deployment record)."""
    from .deploy import aws
    record = aws.undeploy(function_name=function_name, region=region,
                          echo=lambda m: click.echo(m, err=True))
    click.echo(f"removed deployment {record['function']} in {record['region']}")
