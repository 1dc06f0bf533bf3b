"""Reading records out of byte-range splits.

Hadoop's rule decides which split owns a line: the split that holds its first byte. A split
starting mid-line skips to the next line start; a split reads past its end to finish its last
line. Reading is streamed in blocks, so memory holds one block (plus one line, if a line is longer).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .storage.base import Store

BLOCK = 8 * 1024 * 1024


class RecordError(Exception):
    """A record could not be decoded or mapped; names the object and byte offset."""

    def __init__(self, url: str, offset: int, cause: str) -> None:
        super().__init__(f"{url} at byte {offset}: {cause}")
        self.url, self.offset, self.cause = url, offset, cause


@dataclass
class Block:
    """Complete lines decoded from one stretch of an object."""

    offset: int  # absolute byte offset of the first line
    raw: bytes  # the undecoded bytes of these lines, newlines included
    lines: list[str]
    #: Absolute offset of each line, when some lines of ``raw`` were dropped (undecodable).
    offsets: list[int] | None = None

    def line_offset(self, index: int) -> int:
        if self.offsets is not None:
            return self.offsets[index]
        pos = 0
        for _ in range(index):
            pos = self.raw.index(b"\n", pos) + 1
        return self.offset + pos


def _find_line_start(store: Store, key: str, start: int, block: int) -> int | None:
    """Offset of the first line that starts at or after ``start`` (None when there is none)."""
    if start == 0:
        return 0
    pos = start - 1
    while True:
        data = store.get_range(key, pos, pos + block)
        if not data:
            return None
        i = data.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(data)


def read_blocks(store: Store, key: str, start: int, end: int, *,
                block: int = BLOCK) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) chunks holding exactly the lines that start in [start, end).

    Every chunk ends with a newline, except possibly the object's last one.
    """
    first = _find_line_start(store, key, start, block)
    if first is None or first >= end:
        return
    pos = first
    buf_offset = first
    buf = b""
    while pos < end:
        data = store.get_range(key, pos, min(end, pos + block))
        if not data:
            break
        pos += len(data)
        buf += data
        cut = buf.rfind(b"\n")
        if cut >= 0:
            yield buf_offset, buf[:cut + 1]
            buf_offset += cut + 1
            buf = buf[cut + 1:]
    if not buf:
        return
    # The last line started before `end` but runs past it: finish it.
    while True:
        data = store.get_range(key, pos, pos + block)
        if not data:
            yield buf_offset, buf
            return
        pos += len(data)
        i = data.find(b"\n")
        if i >= 0:
            yield buf_offset, buf + data[:i + 1]
            return
        buf += data


def decode_lines(raw: bytes) -> list[str]:
    """Split on LF, drop one trailing CR per line (CRLF files), decode as UTF-8 (strict)."""
    text = raw.decode("utf-8")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if "\r" in text:
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    return lines


def iter_blocks(store: Store, key: str, start: int, end: int, *,
                on_bad: Callable[[RecordError, bytes], None] | None = None,
                block: int = BLOCK) -> Iterator[Block]:
    """Decoded blocks of the lines in a split.

    Undecodable bytes raise RecordError, or with ``on_bad`` set are reported line by line and
    skipped.
    """
    url = store.child_url(key)
    for offset, raw in read_blocks(store, key, start, end, block=block):
        try:
            lines = decode_lines(raw)
        except UnicodeDecodeError as e:
            if on_bad is None:
                raise RecordError(url, offset + e.start, f"invalid UTF-8 ({e.reason})") from None
            lines, offsets = _decode_skipping(raw, offset, url, on_bad)
            yield Block(offset, raw, lines, offsets)
            continue
        yield Block(offset, raw, lines)


def _decode_skipping(raw: bytes, offset: int, url: str,
                     on_bad: Callable[[RecordError, bytes], None]) -> tuple[list[str], list[int]]:
    """The decodable lines and their offsets; each undecodable line goes to ``on_bad``."""
    lines, offsets = [], []
    pos = 0
    for chunk in raw.split(b"\n")[:-1] if raw.endswith(b"\n") else raw.split(b"\n"):
        try:
            lines.append(decode_lines(chunk)[0] if chunk else "")
            offsets.append(offset + pos)
        except UnicodeDecodeError as e:
            on_bad(RecordError(url, offset + pos + e.start, f"invalid UTF-8 ({e.reason})"), chunk)
        pos += len(chunk) + 1
    return lines, offsets


def _parse_csv(line: str) -> list[str]:
    return next(csv.reader([line]))


def record_parser(input_format: str) -> Callable[[str], Any] | None:
    """How a decoded line becomes a record; None means the line itself."""
    if input_format == "text":
        return None
    if input_format == "jsonl":
        return json.loads
    if input_format == "csv":
        return _parse_csv
    raise ValueError(f"unknown input format {input_format!r}: use text, jsonl or csv")
