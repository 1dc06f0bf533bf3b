"""Job settings: one validated model for config files, CLI flags and map_reduce() keywords.

A config file (YAML or JSON) holds the same fields as the command line, in the spirit of the
reference architecture's driverconfig::

    job: examples/wordcount.py:WordCount
    input: [data/input]
    output: data/output
    reducers: 4
    memory: 1024        # MB per function
    timeout: 300        # seconds per invocation
    concurrency: 8
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40,
          "tib": 2**40}


class ConfigError(ValueError):
    """A setting is missing, unknown or ill-typed; the message names the field."""


def parse_size(text: str | int | float) -> int:
    """'64MB', '1.5GiB', '512k', 1000 -> bytes (binary units)."""
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"size must not be negative: {text!r}")
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 64MB, 1GB, 500000)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def default_concurrency() -> int:
    return max(2, os.cpu_count() or 2)


class JobSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    job: str | None = Field(None, description="file.py, file.py:Class or package.module:Class")
    input: list[str] = Field(default_factory=list, description="input URLs (files, dirs, globs)")
    output: str | None = Field(None, description="output URL")
    work_dir: str | None = Field(None, description="URL for the job's working data")
    reducers: int = Field(2, ge=1, le=100000)
    memory: int = Field(1024, ge=128, le=10240, description="MB of memory per function")
    timeout: float = Field(900, gt=0, le=900, description="seconds per invocation (Lambda max 900)")
    concurrency: int = Field(default_factory=default_concurrency, ge=1, le=10000)
    split_size: int | None = Field(None, ge=1, description="bytes per map split (e.g. 64MB)")
    platform: Literal["local", "inline", "lambda"] = "local"
    s3_endpoint: str | None = Field(None, description="S3 endpoint URL (S3-compatible stores); "
                                    "else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL")
    md5_prefixes: bool = Field(False, description="MARLA's md5 key prefixes for intermediate "
                               "objects, spreading request load over S3's key partitions")
    max_attempts: int = Field(3, ge=1, le=20, description="attempts per task before the job fails")
    overwrite: bool = False
    keep_intermediates: bool = False
    bad_records: Literal["fail", "skip"] = "fail"
    buffer_mb: float | None = Field(None, gt=0, description="spill threshold per task, MB")
    fanout: Literal["direct", "tree"] = Field(
        "direct", description="how mappers are invoked: direct (a pool of invoker threads) or "
                              "tree (MARLA's logarithmic tree: each mapper invokes its children)")
    reduce: Literal["shuffle", "tree"] = Field(
        "shuffle", description="shuffle (R reducers, one partition each) or tree (rounds of "
                               "reducers over batches; needs ASSOCIATIVE = True)")
    reduce_fan_in: int = Field(4, ge=2, le=1000,
                               description="inputs per tree-reduce task (batches of at least 2)")
    invoker_threads: int = Field(16, ge=1, le=1000,
                                 description="threads that invoke functions for direct fan-out")
    # AWS Lambda (platform "lambda"); see docs/aws.md.
    lambda_function: str = Field("smr-worker", min_length=1, max_length=140,
                                 description="name or ARN of the deployed Lambda function")
    lambda_endpoint: str | None = Field(
        None, description="Lambda API endpoint URL (e.g. a local `smr local-lambda` server)")
    region: str | None = Field(None, description="AWS region (default: boto3's configuration)")
    lambda_invocation: Literal["sync", "event"] = Field(
        "sync", description="sync: RequestResponse calls from a thread pool (results and errors "
                            "come back); event: fire-and-forget, outcomes read from the store")
    lambda_requirements: list[str] = Field(
        default_factory=list, description="pure-Python distributions the job imports, bundled "
                                          "into the Lambda deployment package")
    lambda_event_margin: float = Field(
        60, ge=0, description="event mode: seconds past the timeout before a task with no "
                              "commit record counts as failed")
    inject_faults: str | None = Field(
        None, description='fault injection, e.g. "kill=0.1,timeout=0.05,oom=0.05,store=0.05,'
                          'duplicate=0.1,seed=7" (see smr.faults)')
    speculative: bool = Field(False, description="start a backup attempt for a straggling task")
    speculative_after: float = Field(
        2.0, gt=0, description="a task straggles after this many times the median duration "
                               "of the phase's finished tasks")
    speculative_min_seconds: float = Field(
        5.0, ge=0, description="and after at least this many seconds")
    split_on_oom: bool = Field(
        True, description="re-split a map task that ran out of memory into two halves")

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("inject_faults")
    @classmethod
    def _faults(cls, v: Any) -> Any:
        if v is not None:
            from .faults import FaultSpec
            FaultSpec.parse(v)  # FaultSpecError is a ValueError: reported against the field
        return v

    @field_validator("split_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else parse_size(v)

    def store_options(self) -> dict[str, Any]:
        return {"s3_endpoint": self.s3_endpoint} if self.s3_endpoint else {}


def describe_errors(err: ValidationError, source: str = "") -> str:
    """One line per problem, each naming the field."""
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif "input" in e and e["type"] != "missing":
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{source}{': ' if source else ''}field '{field}': {msg}")
    return "; ".join(lines)


def make_settings(source: str = "", **values: Any) -> JobSettings:
    try:
        return JobSettings(**values)
    except ValidationError as e:
        raise ConfigError(describe_errors(e, source)) from None


def load_config_file(path: str) -> dict[str, Any]:
    """The raw mapping in a YAML or JSON config file (validated later, merged with flags)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{str(e).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of settings, not {type(data).__name__}")
    # Paths in a config file are relative to the file, like a Makefile's.
    base = os.path.dirname(os.path.abspath(path))
    for field in ("job",):
        if isinstance(data.get(field), str):
            data[field] = _relative(data[field], base, is_job=True)
    for field in ("output", "work_dir"):
        if isinstance(data.get(field), str):
            data[field] = _relative(data[field], base)
    if isinstance(data.get("input"), list):
        data["input"] = [_relative(u, base) if isinstance(u, str) else u for u in data["input"]]
    elif isinstance(data.get("input"), str):
        data["input"] = [_relative(data["input"], base)]
    return data


def _relative(url: str, base: str, is_job: bool = False) -> str:
    if "://" in url or os.path.isabs(url):
        return url
    if is_job:
        path, sep, cls = url.partition(":")
        if not path.endswith(".py"):
            return url  # package.module:Class
        return os.path.join(base, path) + sep + cls
    return os.path.join(base, url)
