"""Deploying smr's worker to AWS Lambda, and removing exactly what a deployment created.

``deploy`` builds the package (``package.py``), creates the function's IAM role with its
least-privilege policy (``iam.py``) unless a role is given, creates or updates the function and,
for an event-triggered job (``watch``), lets S3 invoke it and *merges* an object-created
notification into the bucket's configuration, leaving every other notification as it was.

What it created is kept in a deployment record, a JSON file in the state directory
(``$SMR_STATE_DIR`` or ``~/.smr/deployments``), named by region and function. ``undeploy`` reads
it and removes those things and nothing else: a role that was passed in stays, other
notifications on the bucket stay, a function smr did not create is never touched (deploy refuses
to take over a function without smr's tag).

S3 has no conditional write for notification configurations: a merge is a read-modify-write, so
two tools editing one bucket's notifications at the same instant can lose one edit.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import iam
from .package import (ZIP_LIMIT_DIRECT, Package, PackageError, build_package, default_runtime,
                      job_entry)

log = logging.getLogger(__name__)

HANDLER = "smr.worker.handler.handler"
MANAGED_TAG = "smr:managed"
#: Lambda's limit for all environment variables of a function together.
ENV_LIMIT = 4 * 1024
#: How long a new IAM role may take to become assumable by Lambda (IAM is eventually consistent).
ROLE_PROPAGATION_S = 90.0


class DeployError(Exception):
    """A deployment cannot be made or removed; the message names the cause."""


@dataclass
class Plan:
    """Everything deploy, the template and ``iam-policy`` compute alike from the settings."""

    function_name: str
    region: str
    account: str
    scopes: iam.Scopes
    policy: dict[str, Any]
    role_name: str
    memory: int
    timeout: int
    ephemeral_mb: int
    runtime: str
    architecture: str
    environment: dict[str, str]
    watch: tuple[str, str] | None  # (bucket, prefix)
    notification_id: str | None
    permission_sid: str | None
    retry_attempts: int

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"


def state_dir() -> str:
    return os.environ.get("SMR_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".smr",
                                                           "deployments")


def record_path(function_name: str, region: str, directory: str | None = None) -> str:
    return os.path.join(directory or state_dir(), f"{region}--{function_name}.json")


def make_plan(settings: Any, *, watch: str | None = None, function_name: str | None = None,
              region: str, account: str, ephemeral_mb: int = 512, runtime: str | None = None,
              architecture: str = "x86_64", job_entry: str | None = None) -> Plan:
    name = function_name or settings.lambda_function
    if not 1 <= len(name) <= 64 or not all(c.isalnum() or c in "-_" for c in name):
        raise DeployError(f"function name {name!r}: use 1-64 letters, digits, '-' or '_'")
    if not 512 <= ephemeral_mb <= 10240:
        raise DeployError(f"ephemeral storage {ephemeral_mb} MB: must be 512-10240 MB")
    try:
        scopes = iam.scopes_for(work_dir=settings.work_dir, output=settings.output,
                                inputs=settings.input, watch=watch)
        watched = iam.s3_location(watch, "watch") if watch else None
    except iam.ScopeError as e:
        raise DeployError(str(e)) from None
    if watched:
        for what, url in (("output", settings.output), ("work_dir", settings.work_dir)):
            if url:
                b, p = iam.s3_location(url, what)
                if b == watched[0] and _overlaps(p, watched[1]):
                    raise DeployError(f"{what} {url} is inside the watched prefix {watch}: "
                                      "every object the job writes would trigger it again")
    env = {"SMR_DEPLOYMENT": name, "SMR_WORK_DIR": settings.work_dir}
    if job_entry:
        env["SMR_JOB"] = job_entry
    keep = settings.model_dump(mode="json", exclude_unset=True,
                               exclude={"job", "platform", "lambda_endpoint", "lambda_requirements"})
    env["SMR_SETTINGS"] = json.dumps(keep, separators=(",", ":"), sort_keys=True)
    if watch:
        env["SMR_WATCH"] = watch
    size = sum(len(k) + len(v) for k, v in env.items())
    if size > ENV_LIMIT:
        raise DeployError(f"the function's environment would be {size} bytes, over Lambda's "
                          f"{ENV_LIMIT}-byte limit; put fewer settings in the deployment")
    digest = hashlib.sha1(f"{name}|{watch}".encode()).hexdigest()[:8]
    return Plan(
        function_name=name, region=region, account=account, scopes=scopes,
        policy=iam.policy_document(scopes, function_name=name, region=region, account=account),
        role_name=iam.role_name(name), memory=settings.memory,
        timeout=int(math.ceil(settings.timeout)), ephemeral_mb=ephemeral_mb,
        runtime=runtime or default_runtime(), architecture=architecture, environment=env,
        watch=watched,
        notification_id=f"smr-{name}-{digest}" if watched else None,
        permission_sid=f"smr-s3-{digest}" if watched else None,
        # The driver retries tasks itself; an event-triggered job has only Lambda's retries.
        retry_attempts=2 if watched else 0)


def _with(settings: Any, **values: Any) -> Any:
    from ..config import make_settings
    return make_settings(**{**settings.model_dump(exclude_unset=True), **values})


def _overlaps(a: str, b: str) -> bool:
    a, b = a.strip("/"), b.strip("/")
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


# -- clients ----------------------------------------------------------------------------------
class _Clients:
    def __init__(self, region: str | None, s3_endpoint: str | None = None) -> None:
        import boto3
        self.session = boto3.session.Session(region_name=region)
        self.region = self.session.region_name
        if not self.region:
            raise DeployError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
        self._s3_endpoint = s3_endpoint
        self._cache: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._cache:
            kw = {"endpoint_url": self._s3_endpoint} if service == "s3" and self._s3_endpoint else {}
            self._cache[service] = self.session.client(service, **kw)
        return self._cache[service]

    @property
    def iam(self) -> Any:
        return self.client("iam")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def sts(self) -> Any:
        return self.client("sts")

    def account(self) -> str:
        return self.sts.get_caller_identity()["Account"]


def _code(e: Exception) -> str:
    return getattr(e, "response", {}).get("Error", {}).get("Code", "")


# -- deploy -----------------------------------------------------------------------------------
def trigger_function_name(registration: dict[str, Any]) -> str:
    """The function that serves a trigger (``smr deploy --platform lambda``): its own."""
    named = (registration.get("settings") or {}).get("lambda_function")
    return named if named and named != "smr-worker" else f"smr-{registration['name']}"


def _from_registration(settings: Any, registration: dict[str, Any],
                       work_dir: str | None) -> Any:
    """Settings for a trigger's function: it watches, writes the trigger's output, no inputs."""
    from ..config import make_settings
    values = settings.model_dump(exclude_unset=True) if settings is not None else dict(
        registration.get("settings") or {})
    values.update(output=registration["output"], input=[],
                  lambda_function=trigger_function_name(registration))
    if work_dir:
        values["work_dir"] = work_dir
    return make_settings(**values)


def deploy(settings: Any = None, *, watch: str | None = None, function_name: str | None = None,
           role_arn: str | None = None, ephemeral_mb: int = 512, runtime: str | None = None,
           architecture: str = "x86_64", requirements: list[str] | None = None,
           directory: str | None = None, registration: dict[str, Any] | None = None,
           work_dir: str | None = None, columnar: bool | None = None,
           echo: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Create or update the deployment for ``settings``; return its deployment record.

    ``registration`` (a trigger's record from ``smr.triggers.register``) deploys the function
    that serves that trigger: it watches the trigger's prefix and writes under its output.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    if registration is not None:
        settings = _from_registration(settings, registration, work_dir)
        watch = watch or registration["watch"]
    elif work_dir:
        settings = _with(settings, work_dir=work_dir)
    try:
        entry = job_entry(settings.job)
    except PackageError as e:
        raise DeployError(str(e)) from None
    # Settings are checked (plan) before anything slow or remote happens.
    make_plan(settings, watch=watch, function_name=function_name,
              region=settings.region or "us-east-1", account="000000000000",
              ephemeral_mb=ephemeral_mb, runtime=runtime, architecture=architecture,
              job_entry=entry)
    clients = _Clients(settings.region, settings.s3_endpoint)
    try:
        account = clients.account()
        plan = make_plan(settings, watch=watch, function_name=function_name,
                         region=clients.region, account=account, ephemeral_mb=ephemeral_mb,
                         runtime=runtime, architecture=architecture, job_entry=entry)
        with tempfile.TemporaryDirectory(prefix="smr-deploy-") as tmp:
            try:
                pkg = build_package(os.path.join(tmp, "smr-lambda.zip"), job=settings.job,
                                    requirements=list(requirements if requirements is not None
                                                      else settings.lambda_requirements),
                                    runtime=runtime, architecture=architecture, zip_limit=None,
                                    columnar=columnar)
            except PackageError as e:
                raise DeployError(str(e)) from None
            echo(f"package: {pkg.zipped_bytes / 2**20:.1f} MB zipped, "
                 f"{pkg.unzipped_bytes / 2**20:.1f} MB unzipped ({', '.join(pkg.distributions)})")
            return _deploy(clients, plan, pkg, settings, role_arn, directory, echo)
    except ClientError as e:
        err = e.response.get("Error", {})
        raise DeployError(f"AWS refused {e.operation_name}: {err.get('Code')}: "
                          f"{err.get('Message')}") from None
    except BotoCoreError as e:
        raise DeployError(f"AWS request failed: {e}") from None


def _deploy(c: _Clients, plan: Plan, pkg: Package, settings: Any, role_arn: str | None,
            directory: str | None, echo: Callable[[str], None]) -> dict[str, Any]:
    path = record_path(plan.function_name, plan.region, directory)
    old = _load(path)
    created: dict[str, Any] = (old or {}).get("created") or {
        "function": False, "role": None, "role_policy": None, "permissions": [],
        "notifications": [], "code_objects": []}
    record = {"version": 1, "function": plan.function_name, "region": plan.region,
              "account": plan.account, "function_arn": plan.function_arn, "created": created}

    def save() -> None:
        # Saved after every step, so a deploy that fails half-way can still be undone.
        record["updated"] = dt.datetime.now(dt.timezone.utc).isoformat()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        os.replace(tmp, path)

    if plan.watch:
        # Refuse a trigger S3 would reject before anything is created.
        _check_overlap(plan.watch[0], _get_notifications(c, plan.watch[0]), notification(plan))
    existing = _function(c, plan.function_name)
    if existing is not None and not created.get("function"):
        tags = c.client("lambda").list_tags(Resource=existing["FunctionArn"]).get("Tags", {})
        if tags.get(MANAGED_TAG) != "true":
            raise DeployError(f"Lambda function {plan.function_name!r} exists and was not "
                              "created by smr; choose another --function-name")
        # smr made it, but its record is gone (another machine, a deleted state dir): adopt it,
        # so that undeploy removes it.
        created["function"] = True
        echo(f"function {plan.function_name} was deployed by smr without a record here; "
             "adopting it")
    # The role.
    if role_arn:
        record["role_arn"] = role_arn
    else:
        record["role_arn"] = _ensure_role(c, plan, created, save, echo)
    # The code: inline up to Lambda's direct-upload limit, through the work bucket beyond it.
    code: dict[str, Any] = {"ZipFile": pkg.zip_bytes()}
    if pkg.zipped_bytes > ZIP_LIMIT_DIRECT:
        work_bucket, work_prefix = iam.s3_location(settings.work_dir, "work_dir")
        key = "/".join(p for p in (work_prefix, "deploy", f"{plan.function_name}-"
                                   f"{pkg.sha256[:16].replace('/', '_')}.zip") if p)
        c.s3.upload_file(pkg.path, work_bucket, key)
        entry = {"bucket": work_bucket, "key": key}
        if entry not in created["code_objects"]:
            created["code_objects"].append(entry)
        save()
        code = {"S3Bucket": work_bucket, "S3Key": key}
        echo(f"uploaded the {pkg.zipped_bytes / 2**20:.1f} MB package to s3://{work_bucket}/{key}")
    # The function.
    config = {"Runtime": plan.runtime, "Role": record["role_arn"], "Handler": HANDLER,
              "MemorySize": plan.memory, "Timeout": plan.timeout,
              "EphemeralStorage": {"Size": plan.ephemeral_mb},
              "Environment": {"Variables": plan.environment},
              "Description": "smr worker: MapReduce on serverless functions"}
    lam = c.client("lambda")
    if existing is None:
        _create_function(c, plan, config, code)
        created["function"] = True
        save()
        echo(f"created function {plan.function_name}")
    else:
        if existing.get("CodeSha256") != pkg.sha256:
            lam.update_function_code(FunctionName=plan.function_name, **code)
            _wait_updated(c, plan.function_name)
        lam.update_function_configuration(FunctionName=plan.function_name, **config)
        _wait_updated(c, plan.function_name)
        echo(f"updated function {plan.function_name}")
    lam.put_function_event_invoke_config(FunctionName=plan.function_name,
                                         **event_invoke_config(plan))
    # Triggers: drop those of an earlier deployment that this one no longer has, then add ours.
    for n in list(created["notifications"]):
        if plan.watch is None or (n["bucket"], n["id"]) != (plan.watch[0], plan.notification_id):
            _remove_notification(c, n["bucket"], n["id"])
            created["notifications"].remove(n)
            save()
    for p in list(created["permissions"]):
        if p["sid"] != plan.permission_sid:
            _remove_permission(c, plan.function_name, p["sid"])
            created["permissions"].remove(p)
            save()
    if plan.watch:
        bucket, prefix = plan.watch
        sid = plan.permission_sid
        try:
            lam.add_permission(FunctionName=plan.function_name, StatementId=sid,
                               Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                               SourceArn=f"arn:aws:s3:::{bucket}", SourceAccount=plan.account)
        except Exception as e:
            if _code(e) != "ResourceConflictException":  # already there from a redeploy
                raise
        if {"sid": sid} not in created["permissions"]:
            created["permissions"].append({"sid": sid})
        save()
        _merge_notification(c, bucket, notification(plan))
        if {"bucket": bucket, "id": plan.notification_id} not in created["notifications"]:
            created["notifications"].append({"bucket": bucket, "id": plan.notification_id})
        record["watch"] = f"s3://{bucket}/{prefix}"
        save()
        echo(f"s3://{bucket}/{prefix}: new objects now invoke {plan.function_name}")
    record["package"] = {"zipped_bytes": pkg.zipped_bytes, "unzipped_bytes": pkg.unzipped_bytes,
                         "sha256": pkg.sha256, "distributions": pkg.distributions}
    record["policy"] = plan.policy
    save()
    return record


def _function(c: _Clients, name: str) -> dict[str, Any] | None:
    try:
        return c.client("lambda").get_function_configuration(FunctionName=name)
    except Exception as e:
        if _code(e) == "ResourceNotFoundException":
            return None
        raise


def _ensure_role(c: _Clients, plan: Plan, created: dict[str, Any], save: Callable[[], None],
                 echo: Callable[[str], None]) -> str:
    try:
        role = c.iam.get_role(RoleName=plan.role_name)["Role"]
        tags = {t["Key"]: t["Value"] for t in
                c.iam.list_role_tags(RoleName=plan.role_name).get("Tags", [])}
        if tags.get(MANAGED_TAG) != "true" and created.get("role") != plan.role_name:
            raise DeployError(f"IAM role {plan.role_name!r} exists and was not created by smr; "
                              "pass --role ARN to use it, or choose another --function-name")
    except c.iam.exceptions.NoSuchEntityException:
        role = c.iam.create_role(
            RoleName=plan.role_name, Description=f"smr worker {plan.function_name}",
            AssumeRolePolicyDocument=json.dumps(iam.trust_policy()),
            Tags=[{"Key": MANAGED_TAG, "Value": "true"},
                  {"Key": "smr:deployment", "Value": plan.function_name}])["Role"]
        created["role"] = plan.role_name
        save()
        echo(f"created IAM role {plan.role_name}")
    c.iam.put_role_policy(RoleName=plan.role_name, PolicyName=iam.POLICY_NAME,
                          PolicyDocument=json.dumps(plan.policy))
    if created.get("role") == plan.role_name:
        created["role_policy"] = iam.POLICY_NAME
        save()
    return role["Arn"]


def _create_function(c: _Clients, plan: Plan, config: dict[str, Any],
                     code: dict[str, Any]) -> None:
    lam = c.client("lambda")
    deadline = time.monotonic() + ROLE_PROPAGATION_S
    delay = 1.0
    while True:
        try:
            lam.create_function(FunctionName=plan.function_name, Code=code,
                                Architectures=[plan.architecture], PackageType="Zip",
                                Tags={MANAGED_TAG: "true", "smr:deployment": plan.function_name},
                                **config)
            break
        except Exception as e:
            # A role created seconds ago is not yet visible to Lambda.
            if _code(e) != "InvalidParameterValueException" or "role" not in str(e).lower() \
                    or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 8.0)
    _wait_updated(c, plan.function_name)


def _wait_updated(c: _Clients, name: str, timeout: float = 300.0) -> None:
    """Wait until the function is Active and no update is in progress (else Lambda says 409)."""
    deadline = time.monotonic() + timeout
    while True:
        cfg = c.client("lambda").get_function_configuration(FunctionName=name)
        state, update = cfg.get("State", "Active"), cfg.get("LastUpdateStatus", "Successful")
        if state == "Failed" or update == "Failed":
            raise DeployError(f"Lambda function {name}: {cfg.get('StateReason') or cfg.get('LastUpdateStatusReason')}")
        if state == "Active" and update in ("Successful", None):
            return
        if time.monotonic() > deadline:
            raise DeployError(f"Lambda function {name} still {state}/{update} after {timeout:.0f} s")
        time.sleep(1.0)


def event_invoke_config(plan: Plan) -> dict[str, Any]:
    """How Lambda treats the function's asynchronous invocations.

    A driver-run job retries its tasks itself, so Lambda must not (a retry would only cost).
    An event-triggered job has no driver: Lambda retries, then hands the failed event to the
    function itself (an on-failure destination), whose coordinator records the failure and
    relaunches or fails the task (``smr.worker.coordinator.on_failure``).
    """
    cfg: dict[str, Any] = {"MaximumRetryAttempts": plan.retry_attempts}
    if plan.watch:
        cfg["DestinationConfig"] = {"OnFailure": {"Destination": plan.function_arn}}
    return cfg


def notification(plan: Plan) -> dict[str, Any]:
    """The bucket notification that makes new objects under the watched prefix invoke us."""
    assert plan.watch is not None
    bucket, prefix = plan.watch
    entry: dict[str, Any] = {"Id": plan.notification_id, "LambdaFunctionArn": plan.function_arn,
                             "Events": ["s3:ObjectCreated:*"]}
    if prefix:
        entry["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{prefix}/"}]}}
    return entry


_KINDS = ("TopicConfigurations", "QueueConfigurations", "LambdaFunctionConfigurations")


def _get_notifications(c: _Clients, bucket: str) -> dict[str, Any]:
    cfg = c.s3.get_bucket_notification_configuration(Bucket=bucket)
    cfg.pop("ResponseMetadata", None)
    return cfg


def _rule(entry: dict[str, Any], name: str) -> str:
    for r in entry.get("Filter", {}).get("Key", {}).get("FilterRules", []):
        if r.get("Name", "").lower() == name:
            return r.get("Value", "")
    return ""


def _merge_notification(c: _Clients, bucket: str, ours: dict[str, Any]) -> None:
    cfg = _get_notifications(c, bucket)
    _check_overlap(bucket, cfg, ours)
    lambdas = [e for e in cfg.get("LambdaFunctionConfigurations", []) if e.get("Id") != ours["Id"]]
    cfg["LambdaFunctionConfigurations"] = lambdas + [ours]
    c.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=cfg)


def _check_overlap(bucket: str, cfg: dict[str, Any], ours: dict[str, Any]) -> None:
    our_prefix = _rule(ours, "prefix")
    for kind in _KINDS:
        for entry in cfg.get(kind, []):
            if entry.get("Id") == ours["Id"]:
                continue
            created = any(e.startswith("s3:ObjectCreated") for e in entry.get("Events", []))
            other = _rule(entry, "prefix")
            if created and (our_prefix.startswith(other) or other.startswith(our_prefix)) \
                    and not _rule(entry, "suffix"):
                raise DeployError(
                    f"bucket {bucket} already sends object-created events under "
                    f"{other or '(the whole bucket)'!r} elsewhere (notification "
                    f"{entry.get('Id', '?')}); S3 refuses overlapping notifications, so watch "
                    "a prefix outside it")


def _remove_notification(c: _Clients, bucket: str, nid: str) -> None:
    try:
        cfg = _get_notifications(c, bucket)
    except Exception as e:
        if _code(e) == "NoSuchBucket":
            return
        raise
    lambdas = cfg.get("LambdaFunctionConfigurations", [])
    kept = [e for e in lambdas if e.get("Id") != nid]
    if len(kept) == len(lambdas):
        return
    if kept:
        cfg["LambdaFunctionConfigurations"] = kept
    else:
        cfg.pop("LambdaFunctionConfigurations", None)
    c.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=cfg)


def _remove_permission(c: _Clients, function_name: str, sid: str) -> None:
    try:
        c.client("lambda").remove_permission(FunctionName=function_name, StatementId=sid)
    except Exception as e:
        if _code(e) != "ResourceNotFoundException":
            raise


# -- undeploy ---------------------------------------------------------------------------------
def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def undeploy(settings: Any = None, *, function_name: str | None = None,
             region: str | None = None, directory: str | None = None,
             registration: dict[str, Any] | None = None, work_dir: str | None = None,
             echo: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Remove what the deployment record says deploy created; return the record.

    ``registration``: remove the function serving that trigger (see ``deploy``).
    """
    from botocore.exceptions import BotoCoreError, ClientError
    if registration is not None:
        function_name = function_name or trigger_function_name(registration)
        region = region or (registration.get("settings") or {}).get("region")
    name = function_name or (settings.lambda_function if settings is not None else "smr-worker")
    clients = _Clients(region or (settings.region if settings is not None else None),
                       settings.s3_endpoint if settings is not None else None)
    path = record_path(name, clients.region, directory)
    record = _load(path)
    if record is None:
        raise DeployError(f"no deployment record for function {name!r} in {clients.region} "
                          f"(looked for {path}); nothing to remove")
    created = record["created"]
    try:
        for n in created.get("notifications", []):
            _remove_notification(clients, n["bucket"], n["id"])
            echo(f"removed notification {n['id']} from bucket {n['bucket']}")
        for p in created.get("permissions", []):
            _remove_permission(clients, name, p["sid"])
        if created.get("function"):
            try:
                clients.client("lambda").delete_function(FunctionName=name)
                echo(f"deleted function {name}")
            except Exception as e:
                if _code(e) != "ResourceNotFoundException":
                    raise
        role = created.get("role")
        if role:
            for policy in {created.get("role_policy") or iam.POLICY_NAME}:
                try:
                    clients.iam.delete_role_policy(RoleName=role, PolicyName=policy)
                except clients.iam.exceptions.NoSuchEntityException:
                    pass
            try:
                clients.iam.delete_role(RoleName=role)
                echo(f"deleted IAM role {role}")
            except clients.iam.exceptions.NoSuchEntityException:
                pass
        for o in created.get("code_objects", []):
            clients.s3.delete_object(Bucket=o["bucket"], Key=o["key"])
    except ClientError as e:
        err = e.response.get("Error", {})
        raise DeployError(f"AWS refused {e.operation_name}: {err.get('Code')}: "
                          f"{err.get('Message')} (the deployment record {path} is kept; "
                          "run undeploy again)") from None
    except BotoCoreError as e:
        raise DeployError(f"AWS request failed: {e} (the record {path} is kept)") from None
    os.unlink(path)
    return record
