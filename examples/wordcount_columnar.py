"""Word count on the columnar fast path: the same output as wordcount.py, vectorized.

A batch is one ``line`` column; words are runs of Unicode letters, digits and underscores after
lowercasing (Python's ``\\w+`` on ``line.lower()``). Counts are summed by group-by kernels on
both sides of the shuffle.
"""
import pyarrow as pa
import pyarrow.compute as pc

import smr

# Python's \w: letters, digits (all Unicode numbers) and the underscore.
NOT_WORD = r"[^\p{L}\p{N}_]+"
# A line made only of word characters and ASCII blanks splits on blanks alone, which is faster.
ODD_CHAR = r"[^\p{L}\p{N}_ \t\v\f\r]"


class WordCountColumnar(smr.Job):
    AGGREGATE = {"count": "sum"}

    def map_batches(self, batch):
        lines = pc.utf8_lower(batch.column("line"))
        if pc.any(pc.match_substring_regex(lines, ODD_CHAR)).as_py():
            words = pc.split_pattern_regex(lines, NOT_WORD).flatten()
        else:
            words = pc.ascii_split_whitespace(lines).flatten()
        words = pc.filter(words, pc.not_equal(words, ""))  # blank lines, leading separators
        counts = pc.value_counts(words).flatten()
        return pa.table({"key": counts[0], "count": counts[1]})
