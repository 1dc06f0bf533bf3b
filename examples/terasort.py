"""TeraSort: sort 100-byte records by their first 10 bytes into globally sorted output.

A record is one line: a 10-character key, then the rest of the line (the value). The range
partitioner samples keys from the input before the map phase, so reducer i gets only keys
between boundary i-1 and boundary i: part-00000 < part-00001 < ... and each part is sorted.
"""
import smr


class TeraSort(smr.Job):
    PARTITIONER = "range"

    def map(self, line):
        yield line[:10], line[10:]

    def reduce(self, key, values):
        for v in values:
            yield key, v
