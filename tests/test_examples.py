"""The example jobs, each checked against an independent computation (plain Python, DuckDB)."""
import heapq
import math
import random
import re
from collections import Counter, defaultdict

import duckdb

from smr.driver import run_job

from helpers import EXAMPLES, expected_query2a, expected_word_counts, input_files, read_output, text_lines, write


def make_uservisits(d, rows=4000, files=3, seed=3):
    rnd = random.Random(seed)
    prefixes = [f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}." for _ in range(40)]
    for f in range(files):
        lines = []
        for _ in range(rows // files):
            ip = rnd.choice(prefixes) + f"{rnd.randint(0, 255)}.{rnd.randint(0, 255)}"
            lines.append(",".join([ip, f"http://site{rnd.randint(0, 99)}.com/p", "1999-03-02",
                                   f"{rnd.uniform(0, 1000):.6f}", "Mozilla/5.0", "USA", "en-US",
                                   "word", str(rnd.randint(1, 10))]))
        body = "\r\n".join(lines) if f == 1 else "\n".join(lines)  # CRLF, no trailing newline
        write(d / f"uservisits-{f}.csv", body.encode())
    return d


def test_query2a_matches_plain_python_and_duckdb(tmp_path, platform_name):
    d = make_uservisits(tmp_path / "uv")
    run_job(str(EXAMPLES / "query2a.py"), input=[str(d)], output=str(tmp_path / "out"),
            reducers=3, split_size=20_000, platform=platform_name)
    got = dict(read_output(tmp_path / "out"))
    plain = expected_query2a(d)
    con = duckdb.connect()
    rows = con.execute(
        "SELECT SUBSTR(sourceIP, 1, 8), SUM(adRevenue) FROM read_csv(?, header=false, auto_detect=false, "
        "columns={'sourceIP':'VARCHAR','destURL':'VARCHAR','visitDate':'VARCHAR',"
        "'adRevenue':'DOUBLE','userAgent':'VARCHAR','countryCode':'VARCHAR',"
        "'languageCode':'VARCHAR','searchWord':'VARCHAR','duration':'INTEGER'}) GROUP BY 1",
        [str(d / "*.csv")]).fetchall()
    duck = dict(rows)
    assert set(got) == set(plain) == set(duck)
    for k in got:
        assert math.isclose(got[k], plain[k], rel_tol=1e-9)
        assert math.isclose(got[k], duck[k], rel_tol=1e-9)


def test_inverted_index(tmp_path, corpus, platform_name):
    run_job(str(EXAMPLES / "inverted_index.py"), input=[str(corpus)], output=str(tmp_path / "out"),
            reducers=2, split_size=500, platform=platform_name)
    got = dict(read_output(tmp_path / "out"))
    word = re.compile(r"\w+")
    expected = defaultdict(set)
    for p in input_files(corpus):
        for line in text_lines(p.read_bytes()):
            for w in word.findall(line.lower()):
                expected[w].add(p.name)
    assert got == {w: sorted(docs) for w, docs in expected.items()}


def test_two_step_top_words(tmp_path, corpus, platform_name):
    s = run_job(str(EXAMPLES / "top_words.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                reducers=3, split_size=700, platform=platform_name)
    got = read_output(tmp_path / "out")
    counts = expected_word_counts(corpus)
    top = heapq.nsmallest(10, counts.items(), key=lambda wc: (-wc[1], wc[0]))
    assert got == top
    assert s["tasks"]["reduce"] == 3 + 1  # step 1: 3 reducers, step 2: Step(reducers=1)
    assert len(s["steps"]) == 2
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == ["part-00000"]


def test_wordcount_counts_nonascii_and_huge_keys(tmp_path, corpus, platform_name):
    run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
            reducers=2, split_size=333, platform=platform_name)
    got = dict(read_output(tmp_path / "out"))
    assert got["k" * 100_000] == 1
    assert got["hot"] == 20_001
    assert got["日本語"] == Counter(expected_word_counts(corpus))["日本語"] > 0
