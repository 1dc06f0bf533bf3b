"""TeraSort on the columnar fast path (same output as terasort.py): keys and values are sliced
out of the line column, partitioned by sampled key ranges, and sorted by Arrow kernels."""
import pyarrow as pa
import pyarrow.compute as pc

import smr


class TeraSortColumnar(smr.Job):
    PARTITIONER = "range"

    def map_batches(self, batch):
        lines = batch.column("line")
        return pa.table({"key": pc.utf8_slice_codeunits(lines, 0, 10),
                         "value": pc.utf8_slice_codeunits(lines, 10, 1 << 30)})
