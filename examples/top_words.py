"""Two steps: count words, then keep the ten most frequent (ties broken alphabetically)."""
import heapq
import re

import smr

WORD = re.compile(r"\w+")


class TopWords(smr.Job):
    def steps(self):
        return [
            smr.Step(map=self.words, combine=self.count, reduce=self.count),
            smr.Step(map=self.to_one_key, reduce=self.top_ten, reducers=1),
        ]

    def words(self, line):
        for word in WORD.findall(line.lower()):
            yield word, 1

    def count(self, word, counts):
        yield word, sum(counts)

    def to_one_key(self, pair):
        word, count = pair
        yield None, (count, word)

    def top_ten(self, _, count_words):
        for count, word in heapq.nsmallest(10, count_words, key=lambda cw: (-cw[0], cw[1])):
            yield word, count

