"""Word count with input, work dir and output on SeaweedFS (S3) beside the embedded store.

    python benchmarks/s3_vs_embedded.py [--size 1GB] [--reducers 4] [--data DIR]

Generates Zipf text (``smr generate``'s generator, cached in DIR), starts a SeaweedFS
(``weed mini``, loopback only) in a temp dir, uploads the input, then runs the same job on the
``local`` platform twice in one session: all-embedded, then all-S3. Prints wall time and MB/s
for each, and checks that both outputs are byte-identical.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the SeaweedFS launcher the tests use

from seaweed import ACCESS_KEY, SECRET_KEY, start_seaweed, stop_seaweed  # noqa: E402

from smr.cli_store import copy_object  # noqa: E402
from smr.config import parse_size  # noqa: E402
from smr.driver import run_job  # noqa: E402
from smr.generate import generate_text  # noqa: E402
from smr.storage import open_store  # noqa: E402


def parts(url: str, options: dict) -> bytes:
    st = open_store(url, options)
    return b"".join(st.get(o.key) for o in st.list("part-"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--reducers", type=int, default=4)
    ap.add_argument("--data", default=str(ROOT / "data" / "bench-s3"))
    args = ap.parse_args()
    size = parse_size(args.size)
    data = Path(args.data) / f"text-{size}"
    if not data.exists():
        t = time.time()
        generate_text(str(data), size, seed=1, files=args.files)
        print(f"generated {size / 2**20:.0f} MB in {time.time() - t:.1f} s")
    total = sum(p.stat().st_size for p in data.iterdir())
    mb = total / 2**20
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    job = str(ROOT / "examples" / "wordcount.py")
    with tempfile.TemporaryDirectory(prefix="smr-bench-") as tmp:
        sw = start_seaweed(Path(tmp) / "seaweed")
        try:
            opts = sw.options()
            s3 = open_store(f"s3://{sw.bucket}/bench", opts)
            t = time.time()
            src = open_store(str(data))
            for o in src.list(""):
                copy_object(src, o.key, o.size, s3, f"in/{o.key}")
            up = time.time() - t
            print(f"upload to SeaweedFS: {up:.1f} s ({mb / up:.1f} MB/s)")
            results = {}
            for name, inp, out, work in (
                    ("embedded", str(data), f"{tmp}/out", f"{tmp}/work"),
                    ("seaweedfs", f"{s3.url}/in", f"{s3.url}/out", f"{s3.url}/work")):
                t = time.time()
                s = run_job(job, input=[inp], output=out, work_dir=work,
                            reducers=args.reducers, platform="local", s3_endpoint=sw.endpoint)
                wall = time.time() - t
                results[name] = (wall, s, out)
                print(f"{name:>10}: {wall:6.1f} s  {mb / wall:6.1f} MB/s  "
                      f"({s['tasks']['map']} map + {s['tasks']['reduce']} reduce tasks, "
                      f"{s['records']['output']} words, phases {s['phases']})")
            same = parts(results["embedded"][2], opts) == parts(results["seaweedfs"][2], opts)
            print(f"outputs identical: {same}")
            if not same:
                sys.exit(1)
        finally:
            stop_seaweed(sw)


if __name__ == "__main__":
    main()
