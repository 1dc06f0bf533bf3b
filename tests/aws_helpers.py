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
    loopback_only(monkeypatch)


def loopback_only(monkeypatch) -> None:
    """Make any connection from this process to an address other than loopback fail loudly."""
    import socket
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in (
                "127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {address!r}; only loopback is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@contextlib.contextmanager
def local_lambda(**kw) -> Iterator["object"]:
    from smr.platforms.local_lambda import LocalLambdaServer
    kw.setdefault("memory_mb", 512)
    kw.setdefault("timeout_s", 60)
    kw.setdefault("concurrency", 2)
    with LocalLambdaServer(**kw) as server:
        yield server
