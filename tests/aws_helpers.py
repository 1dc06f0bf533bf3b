"""Fake AWS credentials and a local Lambda stand-in for the tests: nothing may reach real AWS."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def fake_aws_env(monkeypatch, tmp_path: Path) -> None:
    """Fake credentials, us-east-1, and no user config files (no profile may leak in)."""
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_S3",
              "AWS_ENDPOINT_URL_IAM"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("SMR_STATE_DIR", str(tmp_path / "smr-state"))


@contextlib.contextmanager
def local_lambda(**kw) -> Iterator["object"]:
    from smr.platforms.local_lambda import LocalLambdaServer
    kw.setdefault("memory_mb", 512)
    kw.setdefault("timeout_s", 60)
    kw.setdefault("concurrency", 2)
    with LocalLambdaServer(**kw) as server:
        yield server
