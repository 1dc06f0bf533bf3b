"""Shared test helpers: awkward inputs and independent computations (no smr code)."""
import json
import random
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_awkward_corpus(root: Path, seed: int = 0) -> Path:
    """Text inputs with every awkward case at once (see DEVELOPERS.md)."""
    rnd = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "naïve", "café", "straße", "日本語", "Ωmega", "x"]
    d = root / "corpus"
    write(d / "empty.txt", b"")
    write(d / "no_newline.txt", "first line\nlast line without newline".encode())
    write(d / "crlf.txt", "one two\r\nthree four\r\n\r\nfive\r\n".encode())
    write(d / "unicode.txt", "naïve café\nstraße 日本語 Ωmega\nüber ünïcödé\n".encode())
    write(d / "long_line.txt", ("short\n" + " ".join(rnd.choice(words) for _ in range(3000))
                                + "\nafter the long line\n").encode())
    write(d / "huge_key.txt", ("k" * 100_000 + " hot\n" + "hot " * 20_000 + "\n").encode())
    for i in range(120):
        write(d / "tiny" / f"t{i:03d}.txt", f"tiny{i % 7} x\n".encode() if i % 5 else b"x")
    lines = []
    for _ in range(3000):
        lines.append(" ".join(rnd.choice(words) for _ in range(rnd.randint(0, 12))))
    write(d / "bulk.txt", "\n".join(lines).encode())
    write(d / "_SUCCESS", b"hidden marker: not input")
    write(d / ".hidden", b"hidden: not input")
    return d


def text_lines(data: bytes) -> list[str]:
    """An independent reading of a text file into lines (no smr code)."""
    text = data.decode("utf-8")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def input_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file()
                  and not any(part.startswith(("_", ".")) for part in p.relative_to(d).parts))


def expected_word_counts(d: Path) -> Counter:
    import re
    word = re.compile(r"\w+")
    c: Counter = Counter()
    for p in input_files(d):
        for line in text_lines(p.read_bytes()):
            c.update(word.findall(line.lower()))
    return c


def expected_query2a(d: Path) -> dict:
    """Query 2a in plain Python: SUM(adRevenue) GROUP BY SUBSTR(sourceIP, 1, 8)."""
    from collections import defaultdict
    sums: dict = defaultdict(float)
    for p in input_files(d):
        for line in text_lines(p.read_bytes()):
            f = line.split(",")
            sums[f[0][:8]] += float(f[3])
    return sums


def read_output(out: Path) -> list[tuple]:
    """Every output record as (key, value), parsed from the part files."""
    assert (out / "_SUCCESS").exists(), "output has no _SUCCESS marker"
    records = []
    for part in sorted(out.glob("part-*")):
        for line in part.read_text(encoding="utf-8").splitlines():
            k, v = line.split("\t")
            records.append((json.loads(k), json.loads(v)))
    return records
