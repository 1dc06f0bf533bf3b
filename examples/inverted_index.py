"""Inverted index: for every word, the sorted list of documents (input files) containing it."""
import posixpath
import re

import smr

WORD = re.compile(r"\w+")


class InvertedIndex(smr.Job):
    def map(self, line):
        doc = posixpath.basename(self.input_url)
        for word in set(WORD.findall(line.lower())):
            yield word, doc

    def combine(self, word, docs):
        for doc in sorted(set(docs)):
            yield word, doc

    def reduce(self, word, docs):
        yield word, sorted(set(docs))
