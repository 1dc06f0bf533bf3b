"""Moving test data in and out of any store (no smr job code involved)."""
import json
from pathlib import Path

from smr.storage import open_store


def upload_dir(local: Path, url: str, options: dict | None = None) -> str:
    """Copy every file under ``local`` (hidden ones too) to the store at ``url``."""
    store = open_store(url, options)
    for p in sorted(local.rglob("*")):
        if p.is_file():
            store.put_file(p.relative_to(local).as_posix(), str(p))
    return url


def read_store_output(url: str, options: dict | None = None) -> list[tuple]:
    """Every output record as (key, value), from the part files in order; needs _SUCCESS."""
    store = open_store(url, options)
    keys = [o.key for o in store.list("")]
    assert "_SUCCESS" in keys, f"no _SUCCESS under {url}: {keys[:10]}"
    records = []
    for key in sorted(k for k in keys if k.startswith("part-")):
        for line in store.get(key).decode("utf-8").splitlines():
            k, v = line.split("\t")
            records.append((json.loads(k), json.loads(v)))
    return records
