"""`smr ls`, `smr cat`, `smr cp` across the embedded store, S3 (SeaweedFS) and memory://."""
import json
import os
import uuid

from click.testing import CliRunner

from smr.cli import main
from smr.driver import run_job
from smr.storage import open_store

from helpers import EXAMPLES, read_output, write
from range_http import RangeServer


def smr(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


def tree(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_cp_round_trip_through_s3_and_memory(seaweed, tmp_path, corpus):
    ep = ("--s3-endpoint", seaweed.endpoint)
    s3 = seaweed.url("cp")
    mem = f"memory://smr-cli-{uuid.uuid4().hex[:8]}"
    r = smr("cp", "-r", corpus, s3, *ep)
    assert r.exit_code == 0, r.output
    n = len(tree(corpus))
    assert f"copied {n} object(s)" in r.stderr
    assert smr("cp", "-r", s3, f"{mem}/copy", *ep).exit_code == 0
    assert smr("cp", "-r", f"{mem}/copy", tmp_path / "back").exit_code == 0
    assert tree(tmp_path / "back") == tree(corpus)  # hidden files, empty files, all of it
    open_store(mem).delete_prefix("")


def test_ls_levels_sizes_and_recursion(seaweed, corpus):
    ep = ("--s3-endpoint", seaweed.endpoint)
    s3 = seaweed.url("ls")
    smr("cp", "-r", corpus, s3, *ep)
    files = tree(corpus)
    top = sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in files})
    r = smr("ls", s3, *ep)
    assert r.exit_code == 0 and r.output.splitlines() == top
    long_lines = smr("ls", "-l", s3, *ep).output.splitlines()
    sizes = {line.split()[1]: int(line.split()[0]) for line in long_lines[:-1]}
    assert sizes["tiny/"] == sum(len(v) for k, v in files.items() if k.startswith("tiny/"))
    assert sizes["bulk.txt"] == len(files["bulk.txt"])
    assert long_lines[-1] == f"total: {len(files)} object(s), {sum(map(len, files.values()))} bytes"
    rec = smr("ls", "-r", s3, *ep).output.splitlines()
    assert rec == sorted(files)
    one = smr("ls", "-l", f"{s3}/tiny/t003.txt", *ep).output.split()
    assert one == [str(len(files["tiny/t003.txt"])), "t003.txt"]
    assert smr("ls", f"{s3}/tiny/", *ep).output.splitlines() == sorted(
        k.split("/")[1] for k in files if k.startswith("tiny/"))


def test_cat_object_and_job_output_in_part_order(seaweed, tmp_path, corpus):
    ep = ("--s3-endpoint", seaweed.endpoint)
    out = seaweed.url("out")
    run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=out,
            work_dir=str(tmp_path / "w"), reducers=3, split_size=5_000, platform="inline",
            s3_endpoint=seaweed.endpoint)
    r = smr("cat", out, *ep)
    assert r.exit_code == 0 and r.stderr == ""
    st = open_store(out, seaweed.options())
    parts = sorted(o.key for o in st.list("part-"))
    assert len(parts) == 3
    expected = b"".join(st.get(k) for k in parts)
    assert r.stdout_bytes == expected and expected.count(b"\n") > 20
    success = smr("cat", f"{out}/_SUCCESS", *ep)
    assert json.loads(success.stdout)["status"] == "succeeded"
    # Download the output and read it like any local output.
    assert smr("cp", "-r", out, tmp_path / "dl", *ep).exit_code == 0
    assert smr("cat", tmp_path / "dl").stdout_bytes == expected
    assert len(read_output(tmp_path / "dl")) == expected.count(b"\n")
    # Parts without _SUCCESS: printed, with a warning that the output is unfinished.
    (tmp_path / "dl" / "_SUCCESS").unlink()
    partial = smr("cat", tmp_path / "dl")
    assert partial.stdout_bytes == expected and "has no _SUCCESS" in partial.stderr


def test_cp_single_objects_and_big_ones(seaweed, tmp_path):
    ep = ("--s3-endpoint", seaweed.endpoint)
    s3 = seaweed.url("one")
    big = os.urandom(19 * 2**20 + 5)  # past the streaming chunk: goes through a temp file
    write(tmp_path / "big file ü.bin", big)
    assert smr("cp", tmp_path / "big file ü.bin", f"{s3}/dir/", *ep).exit_code == 0
    assert smr("cp", f"{s3}/dir/big file ü.bin", f"{s3}/renamed.bin", *ep).exit_code == 0
    (tmp_path / "dl").mkdir()
    assert smr("cp", f"{s3}/renamed.bin", tmp_path / "dl", *ep).exit_code == 0
    assert (tmp_path / "dl" / "renamed.bin").read_bytes() == big
    assert smr("cp", f"{s3}/renamed.bin", tmp_path / "dl" / "x.bin", *ep).exit_code == 0
    assert (tmp_path / "dl" / "x.bin").read_bytes() == big
    assert smr("cat", f"{s3}/dir/big file ü.bin", *ep).stdout_bytes == big
    # A local copy is a copy, not a link to the original.
    assert smr("cp", tmp_path / "dl" / "x.bin", tmp_path / "y.bin").exit_code == 0
    (tmp_path / "y.bin").write_bytes(b"changed")
    assert (tmp_path / "dl" / "x.bin").read_bytes() == big


def test_errors_name_the_url(seaweed, tmp_path, corpus):
    ep = ("--s3-endpoint", seaweed.endpoint)
    s3 = seaweed.url("err")
    cases = [
        (("ls", f"{s3}/nothing", *ep), f"no such object or prefix: {s3}/nothing"),
        (("cat", f"{s3}/nothing", *ep), f"no such object: {s3}/nothing"),
        (("cp", corpus, f"{s3}/x", *ep), f"{corpus} is a directory (prefix), not an object: pass -r"),
        (("cat", corpus), f"{corpus} is a directory (prefix) with no part files"),
        (("cp", "-r", corpus, corpus / "tiny"), "into itself"),
        (("ls", "s3://no-such-bucket-smr/x", *ep), "no such bucket: s3://no-such-bucket-smr"),
        (("ls", "nosuch://x"), "unsupported URL scheme 'nosuch'"),
    ]
    for args, message in cases:
        r = smr(*args)
        assert r.exit_code == 1, (args, r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("smr: error: ") and message in lines[0], (args, r.stderr)


def test_cp_to_http_is_refused_and_cat_reads_it(tmp_path):
    write(tmp_path / "www" / "f.txt", b"served\n")
    srv = RangeServer(tmp_path / "www")
    try:
        assert smr("cat", f"{srv.url}/f.txt").stdout_bytes == b"served\n"
        assert smr("cp", f"{srv.url}/f.txt", tmp_path / "got.txt").exit_code == 0
        assert (tmp_path / "got.txt").read_bytes() == b"served\n"
        r = smr("cp", tmp_path / "got.txt", f"{srv.url}/up.txt")
        assert r.exit_code == 1 and f"cannot write {srv.url}/up.txt" in r.stderr
    finally:
        srv.close()
