"""Deterministic test data: Zipf-distributed text and Big Data Benchmark ``uservisits``.

The same ``(kind, size, seed, files)`` always gives byte-identical files, on any machine, so
benchmarks and tests can regenerate their inputs instead of shipping them. Generation is
vectorized with numpy: gigabytes take seconds, not minutes.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

#: Distinct words in generated text; their frequencies follow Zipf's law (s = 1).
VOCABULARY = 100_000
#: Mean words per line of generated text.
WORDS_PER_LINE = 10
#: Rows are formatted this many at a time (bounds memory).
CHUNK_ROWS = 200_000
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
# Words that need Unicode-aware lowercasing and \w matching; they get high ranks.
_UNICODE_WORDS = ["café", "naïve", "straße", "über", "Ωmega", "日本語", "smörgåsbord", "façade"]


def _vocabulary(rng: np.random.Generator) -> list[bytes]:
    lengths = rng.integers(2, 11, size=VOCABULARY)
    letters = _LETTERS[rng.integers(0, 26, size=int(lengths.sum()))].tobytes()
    words, pos = [], 0
    for n in lengths.tolist():
        words.append(letters[pos:pos + n])
        pos += n
    # A few capitalised words, so that lowercasing matters to a word count.
    for i in range(7, VOCABULARY, 97):
        words[i] = words[i].capitalize()
    for i, w in enumerate(_UNICODE_WORDS):
        words[3 + i * 11] = w.encode()
    return words


def _gather(pool: bytes, starts: np.ndarray, lengths: np.ndarray, idx: np.ndarray) -> bytes:
    """Concatenate the pool slices ``[starts[i], starts[i] + lengths[i])`` for i in idx."""
    lens = lengths[idx]
    total = int(lens.sum())
    out_starts = np.cumsum(lens) - lens
    src = np.repeat(starts[idx] - out_starts, lens) + np.arange(total, dtype=np.int64)
    return np.frombuffer(pool, dtype=np.uint8)[src].tobytes()


def _write_files(output: str, size: int, files: int, name: str,
                 chunk: Callable[[np.random.Generator, int], bytes], seed: int) -> list[str]:
    if size < 0 or files < 1:
        raise ValueError("size must be >= 0 and files >= 1")
    os.makedirs(output, exist_ok=True)
    paths = []
    for f in range(files):
        target = size // files + (1 if f < size % files else 0)
        rng = np.random.default_rng([seed, f])
        path = os.path.join(output, name.format(f))
        tmp = path + ".tmp"
        written = 0
        with open(tmp, "wb") as out:
            while written < target:
                data = chunk(rng, target - written)
                if written + len(data) > target:
                    # Files end on a whole line, so they hold whole records (a little under the
                    # size rather than a truncated row).
                    out.write(data[:data.rfind(b"\n", 0, target - written) + 1])
                    break
                out.write(data)
                written += len(data)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def generate_text(output: str, size: int, *, seed: int = 0, files: int = 1) -> list[str]:
    """Lines of words with Zipf frequencies, at most ``size`` bytes over ``files`` files, each
    ending with a newline."""
    vocab = _vocabulary(np.random.default_rng([seed, 1 << 20]))
    # Each word appears twice in the pool: once followed by a space, once by a newline.
    tokens = [w + b" " for w in vocab] + [w + b"\n" for w in vocab]
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    pool = b"".join(tokens)
    cdf = np.cumsum(1.0 / np.arange(1, VOCABULARY + 1))
    cdf /= cdf[-1]
    mean_len = float((lengths[:VOCABULARY] * np.diff(cdf, prepend=0.0)).sum())

    def chunk(rng: np.random.Generator, remaining: int) -> bytes:
        n = int(min(remaining, 16 << 20) / mean_len) + 16
        idx = np.searchsorted(cdf, rng.random(n), side="right").clip(0, VOCABULARY - 1)
        newline = rng.random(n) < 1.0 / WORDS_PER_LINE
        newline[-1] = True
        return _gather(pool, starts, lengths, idx + VOCABULARY * newline)

    return _write_files(output, size, files, "text-{:05d}.txt", chunk, seed)


_AGENTS = ["Mozilla/5.0 (Windows NT 10.0)", "Mozilla/5.0 (X11; Linux x86_64)", "Opera/9.80",
           "Mozilla/5.0 (Macintosh)", "Googlebot/2.1", "curl/7.68.0", "Safari/605.1.15"]
_COUNTRIES = ["USA", "DEU", "FRA", "GBR", "JPN", "BRA", "IND", "CHN", "CAN", "ESP"]
_LANGUAGES = ["en-US", "de-DE", "fr-FR", "en-GB", "ja-JP", "pt-BR", "hi-IN", "zh-CN", "es-ES"]


def generate_uservisits(output: str, size: int, *, seed: int = 0, files: int = 1) -> list[str]:
    """Big Data Benchmark ``uservisits`` rows, comma-separated, 9 columns:
    sourceIP, destURL, visitDate, adRevenue, userAgent, countryCode, languageCode, searchWord,
    duration."""
    words = [w.decode() for w in _vocabulary(np.random.default_rng([seed, 1 << 21]))[:5000]]
    urls = [f"http://{w}.com/{i}.html" for i, w in enumerate(words[:2000])]
    dates = [f"{y}-{m:02d}-{d:02d}" for y in range(1990, 2010) for m in (1, 4, 7, 10)
             for d in (1, 15, 28)]

    def chunk(rng: np.random.Generator, remaining: int) -> bytes:
        n = int(min(CHUNK_ROWS, remaining / 120 + 8))
        # Skewed first octets, so SUBSTR(sourceIP, 1, 8) groups differ in size.
        a = (rng.zipf(1.3, n) % 223 + 1).tolist()
        b, c, d = (rng.integers(0, 256, n).tolist() for _ in range(3))
        url = rng.integers(0, len(urls), n).tolist()
        date = rng.integers(0, len(dates), n).tolist()
        revenue = np.round(rng.random(n) * 1000, 6).tolist()
        agent = rng.integers(0, len(_AGENTS), n).tolist()
        country = rng.integers(0, len(_COUNTRIES), n).tolist()
        lang = rng.integers(0, len(_LANGUAGES), n).tolist()
        word = rng.integers(0, len(words), n).tolist()
        duration = rng.integers(1, 100, n).tolist()
        rows = [f"{a[i]}.{b[i]}.{c[i]}.{d[i]},{urls[url[i]]},{dates[date[i]]},{revenue[i]:.6f},"
                f"{_AGENTS[agent[i]]},{_COUNTRIES[country[i]]},{_LANGUAGES[lang[i]]},"
                f"{words[word[i]]},{duration[i]}\n" for i in range(n)]
        return "".join(rows).encode()

    return _write_files(output, size, files, "uservisits-{:05d}.csv", chunk, seed)
