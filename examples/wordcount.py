"""Word count: how many times each word appears in the input."""
import re

import smr

WORD = re.compile(r"\w+")


class WordCount(smr.Job):
    ASSOCIATIVE = True  # reduce sums counts: it can also run as a combiner and in a tree
    COMBINE = "sum"  # a word's counts may be added up in the map task already

    def map(self, line):
        for word in WORD.findall(line.lower()):
            yield word, 1

    def reduce(self, word, counts):
        yield word, sum(counts)
