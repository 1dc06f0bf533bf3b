"""Planning: list the inputs, cut them into byte-range splits, pack splits into map tasks."""
from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

from .storage import Store, join_url, split_url, url_scheme
from .storage.base import StoreError

#: Splits per map task at most, so a task's payload stays far below Lambda's 256 KB.
MAX_SPLITS_PER_TASK = 1000
#: Upper bound on a split, whatever the memory: smaller tasks retry cheaply and balance well.
MAX_SPLIT = 128 * 2**20
#: Share of a function's memory for data (the reference architecture's compute_batch_size).
DATA_SHARE = 0.6
_GLOB = set("*?[")


class InputError(ValueError):
    """An input is missing or unreadable; the message names the path."""


@dataclass(frozen=True)
class InputObject:
    root: str  # store URL the key is relative to
    key: str
    size: int

    @property
    def url(self) -> str:
        return join_url(self.root, self.key)


def _hidden(key: str) -> bool:
    # Like Hadoop: files named _* or .* (markers such as _SUCCESS, temp files) are not input.
    return any(part.startswith(("_", ".")) for part in key.split("/"))


def list_inputs(urls: list[str], open_store: Callable[[str], Store]) -> list[InputObject]:
    """Every input object, in a stable order. Raises InputError naming a missing input."""
    if not urls:
        raise InputError("no input given: pass --input URL (a file, a directory or a glob)")
    found: list[InputObject] = []
    for url in urls:
        objs = _list_one(url, open_store)
        found.extend(objs)
    seen: set[tuple[str, str]] = set()
    unique = []
    for o in found:
        if (o.root, o.key) not in seen:
            seen.add((o.root, o.key))
            unique.append(o)
    return unique


def _list_one(url: str, open_store: Callable[[str], Store]) -> list[InputObject]:
    try:
        if any(c in _GLOB for c in url):
            return _list_glob(url, open_store)
        parent, name = split_url(url)
        if name:
            info = open_store(parent).head(name)
            if info is not None:
                return [InputObject(parent, name, info.size)]
        store = open_store(url)
        objs = [InputObject(store.url, o.key, o.size) for o in store.list("")
                if not _hidden(o.key)]
    except StoreError as e:
        raise InputError(f"cannot read input {url}: {e}") from None
    if not objs and not (url_scheme(url) in ("", "file") and os.path.isdir(_local_path(url))):
        raise InputError(f"input not found: {url}")
    return objs


def _list_glob(url: str, open_store: Callable[[str], Store]) -> list[InputObject]:
    head = url
    while any(c in _GLOB for c in head):
        head, _ = split_url(head)
    pattern = url[len(head):].lstrip("/")
    store = open_store(head)
    objs = [InputObject(store.url, o.key, o.size) for o in store.list("")
            if _glob_match(o.key, pattern) and not _hidden(o.key)]
    if not objs:
        raise InputError(f"no input matches {url}")
    return objs


def _glob_match(key: str, pattern: str) -> bool:
    """Shell-style: a wildcard never matches across '/', so each path level matches on its own."""
    parts, pats = key.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(k, p) for k, p in zip(parts, pats))


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def choose_split_size(total_bytes: int, memory_mb: int, concurrency: int) -> int:
    """Bytes per split: fill every concurrent function, never past a memory-sized bound.

    The bound follows the reference architecture's ``compute_batch_size`` (60 % of function
    memory for data), done by bytes; the task count is rounded up to whole waves of
    ``concurrency`` so the last wave does not leave functions idle.
    """
    max_split = max(2**20, min(MAX_SPLIT, int(memory_mb * 2**20 * DATA_SHARE / 4)))
    tasks = max(concurrency, math.ceil(total_bytes / max_split))
    tasks = math.ceil(tasks / concurrency) * concurrency
    return max(1, math.ceil(total_bytes / tasks))


def plan_map_tasks(objects: list[InputObject], split_size: int) -> list[dict[str, Any]]:
    """Cut objects into splits of about ``split_size`` bytes and pack them into tasks.

    A big object becomes several equal splits (record boundaries are fixed up by the readers); a
    tail shorter than an eighth of a split is spread over the others instead of becoming a task
    of its own. Many small objects share one task, until it holds ``split_size`` bytes or
    MAX_SPLITS_PER_TASK splits; a split that would take a task more than an eighth past
    ``split_size`` starts the next one. So no task holds more than 9/8 of a split (tasks of
    equal size are what fill every wave). Empty objects get no split.
    """
    tasks: list[list[list[Any]]] = []
    current: list[list[Any]] = []
    current_bytes = 0
    for obj in objects:
        for start, end in _cuts(obj.size, split_size):
            size = end - start
            if current and current_bytes + size > split_size + split_size // 8:
                tasks.append(current)
                current, current_bytes = [], 0
            current.append([obj.root, obj.key, start, end])
            current_bytes += size
            if current_bytes >= split_size or len(current) >= MAX_SPLITS_PER_TASK:
                tasks.append(current)
                current, current_bytes = [], 0
    if current:
        tasks.append(current)
    return [{"splits": splits, "bytes": sum(s[3] - s[2] for s in splits)} for splits in tasks]


def _cuts(size: int, split_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges cutting ``size`` bytes into equal pieces of about split_size."""
    if size <= 0:
        return []
    n = -(-size // split_size)
    if n > 1 and size - (n - 1) * split_size < split_size // 8:
        n -= 1
    step = -(-size // n)
    return [(start, min(size, start + step)) for start in range(0, size, step)]
