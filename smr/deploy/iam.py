"""The worker's IAM role: trust policy and a least-privilege access policy.

The function may read the job's inputs (and the watched prefix of an event-triggered job), read,
write and delete under its work dir and output, list those prefixes only, write its own log group
and invoke itself (tree fan-out: a mapper starts mappers). Nothing else: no other bucket, prefix,
function or service.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..storage import url_scheme

LOGS_ACTIONS_GROUP = ["logs:CreateLogGroup"]
LOGS_ACTIONS_STREAM = ["logs:CreateLogStream", "logs:PutLogEvents"]


class ScopeError(ValueError):
    """A URL the function must reach is not on S3; the message names the setting."""


def s3_location(url: str, what: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix*`` -> (bucket, "some/prefix"): the fixed part before any glob."""
    if url_scheme(url) not in ("s3", "s3a"):
        raise ScopeError(f"{what}: {url} is not an s3:// URL; Lambda functions can reach S3 only")
    body = url.split("://", 1)[1]
    bucket, _, prefix = body.partition("/")
    if not bucket:
        raise ScopeError(f"{what}: {url} names no bucket")
    for i, ch in enumerate(prefix):
        if ch in "*?[{":
            # A glob: grant its fixed directory, the deepest one that holds every match.
            fixed = prefix[:i]
            prefix = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
            break
    return bucket, prefix.strip("/")


@dataclass
class Scopes:
    """Which S3 locations the function reads, and which it writes."""

    read: list[tuple[str, str]] = field(default_factory=list)
    write: list[tuple[str, str]] = field(default_factory=list)

    @property
    def buckets(self) -> list[str]:
        return sorted({b for b, _ in self.read + self.write})


def scopes_for(*, work_dir: str | None, output: str | None, inputs: list[str] = (),
               watch: str | None = None) -> Scopes:
    if not work_dir:
        raise ScopeError("work_dir: a Lambda deployment needs --work-dir s3://bucket/prefix")
    s = Scopes()
    s.write.append(s3_location(work_dir, "work_dir"))
    if output:
        s.write.append(s3_location(output, "output"))
    for u in inputs:
        s.read.append(s3_location(u, "input"))
    if watch:
        s.read.append(s3_location(watch, "watch"))
    s.read = sorted(set(s.read))
    s.write = sorted(set(s.write))
    return s


def _objects(bucket: str, prefix: str) -> list[str]:
    if not prefix:
        return [f"arn:aws:s3:::{bucket}/*"]
    # Both the object itself (an input may be one file) and everything under it as a directory;
    # not `prefix*`, which would also grant `prefix-other/...`.
    return [f"arn:aws:s3:::{bucket}/{prefix}", f"arn:aws:s3:::{bucket}/{prefix}/*"]


def policy_document(scopes: Scopes, *, function_name: str, region: str,
                    account: str) -> dict[str, Any]:
    """The access policy; deterministic, so deploy, ``iam-policy`` and the template agree."""
    statements: list[dict[str, Any]] = []
    read_objects = sorted({a for b, p in scopes.read for a in _objects(b, p)})
    write_objects = sorted({a for b, p in scopes.write for a in _objects(b, p)})
    if read_objects:
        statements.append({"Sid": "ReadInputs", "Effect": "Allow",
                           "Action": ["s3:GetObject"], "Resource": read_objects})
    statements.append({"Sid": "ReadWriteWorkAndOutput", "Effect": "Allow",
                       "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                       "Resource": write_objects})
    for n, bucket in enumerate(scopes.buckets, 1):
        prefixes = sorted({p for b, p in scopes.read + scopes.write if b == bucket})
        st: dict[str, Any] = {"Sid": f"ListBucket{n}", "Effect": "Allow",
                              "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"}
        if "" not in prefixes:
            st["Condition"] = {"StringLike": {"s3:prefix": sorted(
                {x for p in prefixes for x in (p, f"{p}/*")})}}
        statements.append(st)
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function_name}"
    statements.append({"Sid": "CreateLogGroup", "Effect": "Allow",
                       "Action": LOGS_ACTIONS_GROUP, "Resource": log_group})
    statements.append({"Sid": "WriteLogs", "Effect": "Allow", "Action": LOGS_ACTIONS_STREAM,
                       "Resource": f"{log_group}:*"})
    statements.append({"Sid": "InvokeSelf", "Effect": "Allow",
                       "Action": ["lambda:InvokeFunction"],
                       "Resource": [f"arn:aws:lambda:{region}:{account}:function:{function_name}",
                                    f"arn:aws:lambda:{region}:{account}:function:{function_name}:*"]})
    return {"Version": "2012-10-17", "Statement": statements}


def trust_policy() -> dict[str, Any]:
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                           "Action": "sts:AssumeRole"}]}


def role_name(function_name: str) -> str:
    base = function_name if function_name.startswith("smr") else f"smr-{function_name}"
    return base[:59] + "-role"


POLICY_NAME = "smr-access"

