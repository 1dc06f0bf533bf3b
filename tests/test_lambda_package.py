"""The Lambda deployment package: complete (a job runs from it alone), sized, deterministic."""
import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from smr.deploy.package import PackageError, build_package
from smr.driver import run_job
from smr.platforms.base import InvocationError, Platform, encode_event

from helpers import EXAMPLES, expected_word_counts, read_output

# Runs one invocation the way Lambda's runtime would: an interpreter without site-packages
# (-S), with only the package root (Lambda's /var/task) added to sys.path. It reports every
# module it loaded from outside the standard library and the package.
RUNNER = r"""
import json, sys, sysconfig, types
root = sys.argv[1]
sys.path.insert(0, root)
from smr.worker.handler import handler
ctx = types.SimpleNamespace(memory_limit_in_mb=512, aws_request_id="pkg", cold_start=True)
result = handler(json.loads(sys.stdin.buffer.read()), ctx)
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
outside = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
                 - {""})
outside = [f for f in outside if not f.startswith(stdlib) and not f.startswith(root)]
print(json.dumps({"result": result, "outside": outside}))
"""


class PackagePlatform(Platform):
    """Each invocation in a fresh interpreter that sees nothing but the unzipped package."""

    def __init__(self, root):
        super().__init__(memory_mb=512, timeout_s=120, concurrency=2)
        self.root = str(root)
        self.outside: set[str] = set()
        self._pool = ThreadPoolExecutor(2)

    def invoke(self, event):
        body = encode_event(event)
        self.stats.invocations += 1
        return self._pool.submit(self._run, body)

    def _run(self, body):
        r = subprocess.run([sys.executable, "-S", "-c", RUNNER, self.root], input=body,
                           capture_output=True, timeout=120, cwd=self.root)
        if r.returncode != 0:
            raise InvocationError("error", r.stderr.decode()[-3000:])
        out = json.loads(r.stdout)
        self.outside.update(out["outside"])
        return out["result"]

    def close(self):
        self._pool.shutdown()


def test_a_job_runs_from_the_package_alone(tmp_path, corpus):
    pkg = build_package(str(tmp_path / "pkg.zip"), job=str(EXAMPLES / "wordcount.py"))
    root = tmp_path / "task"
    zipfile.ZipFile(pkg.path).extractall(root)
    assert (root / "smr_job" / "wordcount.py").is_file()
    assert pkg.job_entry == "smr_job/wordcount.py"
    plat = PackagePlatform(root)
    try:
        s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)],
                    output=str(tmp_path / "out"), work_dir=str(tmp_path / "w"), reducers=2,
                    split_size=40_000, platform=plat)
    finally:
        plat.close()
    assert s["tasks"]["map"] >= 2 and s["tasks"]["reduce"] == 2
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))
    assert plat.outside == set(), "the worker loaded modules from outside the package"


def test_package_is_deterministic_and_small(tmp_path):
    a = build_package(str(tmp_path / "a.zip"))
    b = build_package(str(tmp_path / "b.zip"))
    assert a.sha256 == b.sha256
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    names = zipfile.ZipFile(a.path).namelist()
    assert "smr/worker/handler.py" in names
    assert not any(n.startswith(("boto3/", "botocore/")) or "__pycache__" in n for n in names)
    assert set(a.distributions) == {"cloudpickle", "msgpack", "psutil", "zstandard"}
    assert a.zipped_bytes < 50 * 2**20 and a.unzipped_bytes < 250 * 2**20


def test_pure_python_requirement_is_bundled_with_its_code(tmp_path):
    pkg = build_package(str(tmp_path / "p.zip"), requirements=["click"])
    names = zipfile.ZipFile(pkg.path).namelist()
    assert "click/__init__.py" in names and "click" in pkg.distributions
    assert any(n.startswith("click-") and n.endswith(".dist-info/METADATA") for n in names)


def test_compiled_requirement_is_refused_by_name(tmp_path):
    with pytest.raises(PackageError, match=r"lambda_requirements: PyYAML is not pure Python"):
        build_package(str(tmp_path / "p.zip"), requirements=["pyyaml"])


def test_missing_requirement_is_named(tmp_path):
    with pytest.raises(PackageError, match=r"requirement 'no-such-dist-xyz' is not installed"):
        build_package(str(tmp_path / "p.zip"), requirements=["no-such-dist-xyz"])


def test_size_limits_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(PackageError, match=r"MB zipped, over Lambda's 1 MB limit \(largest: "):
        build_package(str(tmp_path / "p.zip"), zip_limit=2**20)
    assert not (tmp_path / "p.zip").exists()  # nothing half-made is left to upload
    import smr.deploy.package as package
    monkeypatch.setattr(package, "UNZIPPED_LIMIT", 2 * 2**20)
    with pytest.raises(PackageError, match=r"MB unzipped, over Lambda's 2 MB limit \(largest: zstandard"):
        build_package(str(tmp_path / "p.zip"))


def test_unknown_runtime_is_refused(tmp_path):
    with pytest.raises(PackageError, match="runtime 'python2.7' is not supported"):
        build_package(str(tmp_path / "p.zip"), runtime="python2.7")


def test_columnar_jobs_get_numpy_and_pyarrow_within_the_limit():
    plain = build_package(None, job=str(EXAMPLES / "wordcount.py"))
    col = build_package(None, job=str(EXAMPLES / "wordcount_columnar.py"))
    assert not {"numpy", "pyarrow"} & set(plain.distributions)
    assert {"numpy", "pyarrow"} <= set(col.distributions)
    assert col.unzipped_bytes < 250 * 2**20  # fits Lambda, through S3 (it is > 50 MB zipped)


@pytest.mark.skipif(not os.environ.get("SMR_SLOW_TESTS"), reason="zips ~215 MB; SMR_SLOW_TESTS=1")
def test_a_columnar_job_runs_from_the_package_alone(tmp_path, corpus):
    pkg = build_package(str(tmp_path / "pkg.zip"), job=str(EXAMPLES / "wordcount_columnar.py"),
                        zip_limit=None)
    root = tmp_path / "task"
    zipfile.ZipFile(pkg.path).extractall(root)
    plat = PackagePlatform(root)
    try:
        run_job(str(EXAMPLES / "wordcount_columnar.py"), input=[str(corpus)],
                output=str(tmp_path / "out"), work_dir=str(tmp_path / "w"), reducers=2,
                split_size=40_000, platform=plat)
    finally:
        plat.close()
    embedded = run_job(str(EXAMPLES / "wordcount_columnar.py"), input=[str(corpus)],
                       output=str(tmp_path / "emb"), reducers=2, split_size=40_000)
    assert embedded["tasks"]["map"] >= 2
    assert read_output(tmp_path / "out") == read_output(tmp_path / "emb")
    assert plat.outside == set()
