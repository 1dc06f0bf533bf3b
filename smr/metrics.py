"""Job metrics: adding up task commit records, and what the job would cost on AWS.

Prices (us-east-1, x86, on-demand, as published by AWS in 2024; override with
``SMR_PRICES_JSON='{"lambda_gb_second": ...}'`` for other regions or architectures):

| item                          | price                 |
|-------------------------------|-----------------------|
| Lambda compute                | $0.0000166667 per GB-second, billed per 1 ms |
| Lambda requests               | $0.20 per million invocations |
| S3 PUT, COPY, POST, LIST      | $0.005 per 1,000 requests |
| S3 GET, HEAD and other reads  | $0.0004 per 1,000 requests |
| S3 DELETE                     | free |
"""
from __future__ import annotations

import json
import os
from typing import Any

PRICES = {
    "lambda_gb_second": 0.0000166667,
    "lambda_request": 0.20 / 1_000_000,
    "s3_write_request": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_read_request": 0.0004 / 1000,  # GET, HEAD
}


def prices() -> dict[str, float]:
    extra = os.environ.get("SMR_PRICES_JSON")
    return {**PRICES, **(json.loads(extra) if extra else {})}


def cost_estimate(*, gb_seconds: float, invocations: int, requests: dict[str, int]) -> dict[str, Any]:
    p = prices()
    writes = requests.get("put", 0) + requests.get("list", 0)
    reads = requests.get("get", 0) + requests.get("head", 0)
    lam = gb_seconds * p["lambda_gb_second"] + invocations * p["lambda_request"]
    s3 = writes * p["s3_write_request"] + reads * p["s3_read_request"]
    return {"lambda_gb_seconds": round(gb_seconds, 3), "invocations": invocations,
            "s3_requests": {"put": requests.get("put", 0), "get": requests.get("get", 0),
                            "list": requests.get("list", 0), "head": requests.get("head", 0),
                            "delete": requests.get("delete", 0)},
            "lambda_usd": round(lam, 6), "s3_usd": round(s3, 6), "total_usd": round(lam + s3, 6)}


def gb_seconds(duration_ms: int, memory_mb: int) -> float:
    """Lambda bills duration rounded up to 1 ms, times configured memory."""
    return duration_ms / 1000 * memory_mb / 1024


def add_requests(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def add_counters(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for group, names in more.items():
        g = total.setdefault(group, {})
        for name, n in names.items():
            g[name] = g.get(name, 0) + n


#: The AWS reference architecture's published run (the serverless MapReduce "BigLambda" blog
#: post): Big Data Benchmark query 2a over the 126.8 GB uservisits data set, in 200 s for
#: $0.1129 of Lambda and S3. GB here are 10**9 bytes.
REFERENCE = {"job": "AWS reference architecture, BDB query 2a over uservisits",
             "input_gb": 126.8, "seconds": 200.0, "usd": 0.1129}


def reference_comparison(input_bytes: int, total_usd: float,
                         wall_seconds: float | None = None) -> dict[str, Any]:
    """This job's cost (and speed) per GB of input beside the reference architecture's."""
    ref = REFERENCE
    ref_per_gb = ref["usd"] / ref["input_gb"]
    gb = input_bytes / 1e9
    out: dict[str, Any] = {
        **ref, "usd_per_gb": ref_per_gb,
        "seconds_per_gb": round(ref["seconds"] / ref["input_gb"], 4),
        "this_job_input_gb": round(gb, 6),
        "reference_usd_at_this_size": ref_per_gb * gb,
    }
    if gb > 0:
        out["this_job_usd_per_gb"] = total_usd / gb
        out["cost_ratio"] = round(total_usd / gb / ref_per_gb, 4)  # < 1: cheaper per GB
        if wall_seconds is not None:
            out["this_job_seconds_per_gb"] = round(wall_seconds / gb, 4)
    return out
