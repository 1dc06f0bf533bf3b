"""Benchmark inputs, generated deterministically and cached by their parameters.

Text and uservisits come from ``smr.generate``; TeraSort records (100 bytes: a 10-character key
of printable ASCII, 88 more characters, a newline) are generated here with numpy, in the style
of gensort's ASCII mode. Text is written as equal files so the scaling runs can use the first
1, 2, 4 or 8 of them.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

from smr.generate import generate_text, generate_uservisits

TERA_RECORD = 100
TERA_KEY = 10
_PRINTABLE = np.frombuffer(bytes(range(32, 127)), dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


def _cached(path: str, params: dict, make) -> str:
    stamp = os.path.join(path, ".params.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == params:
                return path
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    make(path)
    with open(stamp, "w") as f:
        json.dump(params, f)
    return path


def text(root: str, size: int, files: int, seed: int = 1) -> str:
    return _cached(os.path.join(root, "text"), {"size": size, "files": files, "seed": seed,
                                                "whole_lines": True},
                   lambda p: generate_text(p, size, seed=seed, files=files))


def uservisits(root: str, size: int, files: int, seed: int = 2) -> str:
    return _cached(os.path.join(root, "uservisits"), {"size": size, "files": files, "seed": seed,
                                                      "whole_lines": True},
                   lambda p: generate_uservisits(p, size, seed=seed, files=files))


def terasort(root: str, size: int, files: int, seed: int = 3) -> str:
    def make(path: str) -> None:
        records = size // TERA_RECORD
        per_file = -(-records // files)
        row = 0
        for f in range(files):
            n_file = min(per_file, records - row)
            rng = np.random.default_rng([seed, f])
            with open(os.path.join(path, f"tera-{f:05d}.txt"), "wb") as out:
                done = 0
                while done < n_file:
                    n = min(1_000_000, n_file - done)
                    out.write(_tera_chunk(rng, row, n))
                    done += n
                    row += n
    return _cached(os.path.join(root, "terasort"), {"size": size, "files": files, "seed": seed},
                   make)


def _tera_chunk(rng: np.random.Generator, first_row: int, n: int) -> bytes:
    rec = np.empty((n, TERA_RECORD), dtype=np.uint8)
    rec[:, :TERA_KEY] = _PRINTABLE[rng.integers(0, len(_PRINTABLE), (n, TERA_KEY))]
    rec[:, 10:12] = ord(" ")
    rows = np.arange(first_row, first_row + n, dtype=np.uint64)
    for i in range(16):  # the row id in hex, as gensort writes it (16 digits here)
        rec[:, 27 - i] = _HEX[((rows >> np.uint64(4 * i)) & np.uint64(15)).astype(np.int64)]
    rec[:, 28:30] = ord(" ")
    rec[:, 30:99] = (ord("A") + (rows[:, None] + np.arange(69, dtype=np.uint64)) % 26).astype(np.uint8)
    rec[:, 99] = ord("\n")
    return rec.tobytes()


def tiny(root: str, files: int, size: int = 96, seed: int = 4) -> str:
    """``files`` files of exactly ``size`` bytes of words each: one map task apiece."""
    def make(path: str) -> None:
        rng = np.random.default_rng(seed)
        words = [b"alpha", b"beta", b"gamma", b"delta", b"tiny", b"task", b"over", b"head"]
        for i in range(files):
            body = b""
            while len(body) < size:
                body += words[int(rng.integers(0, len(words)))] + (b"\n" if rng.random() < .2 else b" ")
            body = body[:size - 1] + b"\n"
            with open(os.path.join(path, f"tiny-{i:05d}.txt"), "wb") as f:
                f.write(body)
    return _cached(os.path.join(root, f"tiny-{files}"), {"files": files, "size": size, "seed": seed},
                   make)
