"""The plainest word count: one process, collections.Counter, the example job's tokenizer.

    python benchmarks/baseline_counter_1proc.py DIR

Prints seconds, MB/s and distinct words, for comparison with `smr run examples/wordcount.py`.
"""
import os
import re
import sys
import time
from collections import Counter

WORD = re.compile(r"\w+")


def main(root: str) -> None:
    t = time.time()
    counts: Counter = Counter()
    size = 0
    for name in sorted(os.listdir(root)):
        if name.startswith(("_", ".")):
            continue
        path = os.path.join(root, name)
        size += os.path.getsize(path)
        with open(path, encoding="utf-8", newline="") as f:
            for line in f:
                counts.update(WORD.findall(line.lower()))
    secs = time.time() - t
    print(f"{secs:.2f} s, {size / 2**20 / secs:.1f} MB/s, {len(counts)} distinct words")


if __name__ == "__main__":
    main(sys.argv[1])
