"""The data generator: deterministic from its seed, the asked size, well-formed records."""
import hashlib
import re
from collections import Counter

from click.testing import CliRunner

from smr.cli import main
from smr.generate import generate_text, generate_uservisits


def digest(paths):
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_text_is_deterministic_sized_and_zipf(tmp_path):
    a = generate_text(str(tmp_path / "a"), 3_000_001, seed=5, files=3)
    b = generate_text(str(tmp_path / "b"), 3_000_001, seed=5, files=3)
    c = generate_text(str(tmp_path / "c"), 3_000_001, seed=6, files=3)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    data = [open(p, "rb").read() for p in a]
    # Whole lines only: each file stops at its last line that fits its share of the size.
    assert all(d.endswith(b"\n") for d in data)
    assert all(1_000_000 - 200 < len(d) <= 1_000_001 for d in data)
    counts = Counter()
    for p in a:
        counts.update(re.findall(r"\w+", open(p, encoding="utf-8").read().lower()))
    ranked = [n for _, n in counts.most_common(100)]
    # Zipf with s = 1: the most frequent word is about ten times as common as the tenth.
    assert 5 < ranked[0] / ranked[9] < 20
    assert any(not w.isascii() for w in counts)


def test_uservisits_rows_have_nine_columns(tmp_path):
    paths = generate_uservisits(str(tmp_path / "uv"), 500_000, seed=1, files=2)
    rows = 0
    for p in paths:
        text = open(p, encoding="utf-8").read()
        assert text.endswith("\n")
        for line in text.splitlines():
            f = line.split(",")
            assert len(f) == 9, line
            assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", f[0]) and float(f[3]) >= 0
            rows += 1
    assert rows > 3000
    assert digest(paths) == digest(generate_uservisits(str(tmp_path / "uv2"), 500_000, seed=1,
                                                       files=2))


def test_generate_command(tmp_path):
    r = CliRunner().invoke(main, ["generate", "text", "--size", "100KB", "--files", "2",
                                  "--seed", "3", "-o", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["text-00000.txt",
                                                                  "text-00001.txt"]
    assert 100 * 1024 - 400 < sum(p.stat().st_size for p in (tmp_path / "t").iterdir()) <= 100 * 1024
