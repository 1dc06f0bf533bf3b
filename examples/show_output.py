"""Print a finished word count's top words and its job summary: show_output.py OUTPUT_DIR."""
import heapq
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
counts = []
for part in sorted(out.glob("part-*")):
    for line in part.read_text(encoding="utf-8").splitlines():
        k, v = line.split("\t")
        counts.append((json.loads(v), json.loads(k)))
print("top words:")
for count, word in heapq.nsmallest(20, counts, key=lambda cw: (-cw[0], cw[1])):
    print(f"  {word:<20} {count:>12,}")
summary = json.loads((out / "_SUCCESS").read_text())
print("job summary:")
for key in ("job_id", "wall_seconds", "tasks", "records", "bytes", "cold_starts",
            "retries", "cost_usd"):
    print(f"  {key:<13} {json.dumps(summary[key])}")
