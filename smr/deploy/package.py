"""The Lambda deployment package: smr's worker code, its libraries, the job and its dependencies.

Contents (the zip's root is Lambda's ``/var/task``, which is on ``sys.path``):

- ``smr/`` -- smr's Python source (the handler is ``smr.worker.handler.handler``);
- the worker's libraries (``WORKER_DISTRIBUTIONS``); boto3 is not bundled, the Python runtime
  has it;
- ``smr_job/<file>.py`` -- the job module, when the job is a file (``SMR_JOB`` names it), or the
  job's top-level package when it is importable user code;
- the job's declared requirements (``lambda_requirements``) and what they require, which must be
  pure Python (compiled code built for this machine may not load on Lambda).

Libraries are copied from this interpreter's installation when it matches the target (Linux, the
function's architecture and Python version), so building needs no network; otherwise the compiled
ones are fetched as manylinux wheels with ``pip install --platform``. The zip is deterministic
(sorted entries, fixed timestamps): the same inputs give the same bytes and the same CodeSha256,
so a redeploy of unchanged code changes nothing.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
import platform as _platform
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

#: What smr's worker imports besides the standard library (see the test that runs the package
#: in an interpreter without site-packages).
WORKER_DISTRIBUTIONS = ("cloudpickle", "msgpack", "psutil", "zstandard")
#: What the columnar fast path (jobs defining map_batches, smr.columnar) adds.
COLUMNAR_DISTRIBUTIONS = ("numpy", "pyarrow")
#: Provided by Lambda's Python runtimes; never bundled.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil",
                    "six", "pip", "setuptools", "wheel"}
#: Lambda's limits for a deployment package.
ZIP_LIMIT_DIRECT = 50 * 2**20     # zipped, uploaded in the CreateFunction/UpdateFunctionCode call
UNZIPPED_LIMIT = 250 * 2**20      # unzipped, including layers
SUPPORTED_RUNTIMES = ("python3.10", "python3.11", "python3.12", "python3.13")
_COMPILED = (".so", ".pyd", ".dylib")
#: Files of worker libraries that the worker never loads (zstandard's cffi backend, half its size).
_UNUSED = ("zstandard/_cffi.", "zstandard/backend_cffi.py", "pyarrow/include/", "pyarrow/src/",
           "pyarrow/tests/", "numpy/_core/include/", "numpy/_core/tests/", "numpy/tests/")
_UNUSED_SUFFIXES = (".pyx", ".pxd", ".pxi", ".h", ".hpp", ".cc", ".c")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(ValueError):
    """The package cannot be built or would not fit Lambda; the message says which and why."""


@dataclass
class Package:
    path: str
    zipped_bytes: int
    unzipped_bytes: int
    sha256: str  # base64, as Lambda reports CodeSha256
    distributions: list[str] = field(default_factory=list)
    job_entry: str | None = None  # SMR_JOB: the job reference inside the package

    def zip_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()


def default_runtime() -> str:
    """This interpreter's version when Lambda offers it (so libraries can be copied), else 3.12."""
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return mine if mine in SUPPORTED_RUNTIMES else "python3.12"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _matches_target(runtime: str, architecture: str) -> bool:
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        _platform.machine().lower(), "")
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return sys.platform == "linux" and machine == architecture and mine == runtime


def _is_pure(dist: md.Distribution) -> bool:
    text = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: false" in text:
        return False
    return not any(str(f).endswith(_COMPILED) for f in (dist.files or []))


def _requirement_names(dist: md.Distribution) -> list[tuple[str, bool]]:
    """(name, conditional) for each requirement of ``dist``, extras left out."""
    out = []
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if m:
            out.append((m.group(1), bool(marker.strip())))
    return out


def _closure(names: list[str], *, what: str) -> list[md.Distribution]:
    """The installed distributions ``names`` and everything they require, runtime ones left out."""
    seen: dict[str, md.Distribution] = {}
    todo = [(n, False, what) for n in names]
    while todo:
        name, conditional, why = todo.pop()
        key = _norm(name)
        if key in seen or key in RUNTIME_PROVIDED:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            if conditional:
                continue  # a requirement for another Python or platform
            raise PackageError(f"{why}: requirement {name!r} is not installed here; install it "
                               "(pip install ...) so it can be packaged") from None
        seen[key] = dist
        todo.extend((n, c, f"{name} (required by {why})") for n, c in _requirement_names(dist))
    return list(seen.values())


def _dist_files(dist: md.Distribution) -> list[tuple[Path, str]]:
    """(source path, path in the zip) for each installed file of ``dist`` under site-packages."""
    out = []
    for f in dist.files or []:
        rel = str(f).replace("\\", "/")
        if rel.startswith("../") or "/__pycache__/" in f"/{rel}" or rel.endswith(".pyc") \
                or rel.startswith(_UNUSED) or rel.endswith(_UNUSED_SUFFIXES) \
                or "/tests/" in rel and rel.startswith(("numpy/", "pyarrow/")):
            continue
        src = Path(str(dist.locate_file(f)))
        if src.is_file():
            out.append((src, rel))
    return out


def _pip_install(requirements: list[str], runtime: str, architecture: str, target: str) -> None:
    plat = "manylinux2014_x86_64" if architecture == "x86_64" else "manylinux2014_aarch64"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target", target,
           "--platform", plat, "--implementation", "cp",
           "--python-version", runtime.removeprefix("python"), "--only-binary=:all:",
           *requirements]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise PackageError(f"could not fetch Lambda ({plat}, {runtime}) builds of "
                           f"{', '.join(requirements)}: {last}")


def _job_files(job_ref: str | None) -> tuple[list[tuple[Path, str]], str | None]:
    """The job's source files and its reference inside the package (SMR_JOB)."""
    if not job_ref:
        return [], None
    target, sep, cls = job_ref.partition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise PackageError(f"job file not found: {target}")
        return [(path, f"smr_job/{path.name}")], f"smr_job/{path.name}{sep}{cls}"
    top = target.split(".")[0]
    spec = None
    try:
        import importlib.util
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        pass
    if spec is None or not spec.origin:
        raise PackageError(f"job module {target!r} is not importable here")
    origin = Path(spec.origin)
    if any(str(origin).startswith(p) for p in _installed_paths()):
        return [], job_ref  # an installed distribution: declare it in lambda_requirements
    if origin.name == "__init__.py":
        root = origin.parent
        files = [(p, f"{top}/{p.relative_to(root).as_posix()}") for p in sorted(root.rglob("*.py"))
                 if "__pycache__" not in p.parts]
        return files, job_ref
    return [(origin, origin.name)], job_ref


def _is_columnar(job_ref: str | None) -> bool:
    if not job_ref:
        return False
    from ..api import is_columnar
    from ..jobload import JobLoadError, load_job
    try:
        return is_columnar(load_job(job_ref))
    except JobLoadError as e:
        raise PackageError(str(e)) from None


def job_entry(job_ref: str | None) -> str | None:
    """The job's reference inside the package (the function's SMR_JOB), without building it."""
    return _job_files(job_ref)[1]


def _installed_paths() -> list[str]:
    import sysconfig
    return [sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")]


def _smr_files() -> list[tuple[Path, str]]:
    root = Path(__file__).resolve().parent.parent  # the smr package directory
    return [(p, f"smr/{p.relative_to(root).as_posix()}") for p in sorted(root.rglob("*.py"))
            if "__pycache__" not in p.parts]


def build_package(out_path: str | None, *, job: str | None = None, requirements: list[str] = (),
                  runtime: str | None = None, architecture: str = "x86_64",
                  zip_limit: int | None = ZIP_LIMIT_DIRECT,
                  columnar: bool | None = None) -> Package:
    """Build the deployment zip at ``out_path``; raise PackageError if it would not fit Lambda.

    ``zip_limit`` is the zipped size allowed (None when the package goes through S3, where only
    the unzipped limit applies). ``columnar`` adds numpy and pyarrow, for jobs that define
    ``map_batches``; by default it is on exactly when the job does. With ``out_path`` None
    nothing is written: the result says what the package would hold (``zipped_bytes`` 0).
    """
    if columnar is None:
        columnar = _is_columnar(job)
    runtime = runtime or default_runtime()
    if runtime not in SUPPORTED_RUNTIMES:
        raise PackageError(f"runtime {runtime!r} is not supported; use one of "
                           f"{', '.join(SUPPORTED_RUNTIMES)}")
    if architecture not in ("x86_64", "arm64"):
        raise PackageError(f"architecture must be x86_64 or arm64, not {architecture!r}")
    files: dict[str, Path] = {}
    for src, arc in _smr_files():
        files[arc] = src
    job_files, job_entry = _job_files(job)
    for src, arc in job_files:
        files[arc] = src

    user = _closure(list(requirements), what="lambda_requirements")
    for dist in user:
        if not _is_pure(dist):
            compiled = next((str(f) for f in dist.files or [] if str(f).endswith(_COMPILED)), "")
            raise PackageError(
                f"lambda_requirements: {dist.metadata['Name']} is not pure Python ({compiled or 'a platform wheel'}); "
                "only pure-Python requirements are packaged; provide compiled libraries as a "
                "Lambda layer built for the function's architecture")
    worker = _closure(list(WORKER_DISTRIBUTIONS) + (list(COLUMNAR_DISTRIBUTIONS) if columnar
                                                     else []), what="smr's worker")
    names = sorted({d.metadata["Name"] for d in worker + user}, key=str.lower)

    with tempfile.TemporaryDirectory(prefix="smr-pkg-") as tmp:
        local = [d for d in worker + user if _is_pure(d) or _matches_target(runtime, architecture)]
        fetch = [d for d in worker if d not in local]
        for dist in local:
            for src, arc in _dist_files(dist):
                files.setdefault(arc, src)
        if fetch:
            _pip_install([f"{d.metadata['Name']}=={d.version}" for d in fetch], runtime,
                         architecture, tmp)
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                    files.setdefault(p.relative_to(tmp).as_posix(), p)
        unzipped = sum(p.stat().st_size for p in files.values())
        if unzipped > UNZIPPED_LIMIT:
            raise PackageError(_too_big("unzipped", unzipped, UNZIPPED_LIMIT, files))
        if out_path is None:
            return Package("", 0, unzipped, "", names, job_entry)
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
            for arc in sorted(files):
                info = zipfile.ZipInfo(arc, _FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, files[arc].read_bytes())
    zipped = os.path.getsize(out_path)
    if zip_limit is not None and zipped > zip_limit:
        os.unlink(out_path)
        raise PackageError(_too_big("zipped", zipped, zip_limit, files) +
                           "; deploy with an s3:// work dir to upload it through S3 (limit "
                           f"{UNZIPPED_LIMIT // 2**20} MB unzipped)")
    with open(out_path, "rb") as f:
        digest = base64.b64encode(hashlib.sha256(f.read()).digest()).decode()
    return Package(out_path, zipped, unzipped, digest, names, job_entry)


def _too_big(what: str, size: int, limit: int, files: dict[str, Path]) -> str:
    by_top: dict[str, int] = {}
    for arc, p in files.items():
        top = arc.split("/")[0]
        by_top[top] = by_top.get(top, 0) + p.stat().st_size
    biggest = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in
                        sorted(by_top.items(), key=lambda kv: -kv[1])[:3])
    return (f"deployment package is {size / 2**20:.1f} MB {what}, over Lambda's "
            f"{limit / 2**20:.0f} MB limit (largest: {biggest})")
