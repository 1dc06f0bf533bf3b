"""Big Data Benchmark query 2a on the columnar fast path (same output as query2a.py):

    SELECT SUBSTR(sourceIP, 1, 8), SUM(adRevenue) FROM uservisits GROUP BY SUBSTR(sourceIP, 1, 8)

pyarrow's CSV reader parses only the two columns the query needs.
"""
import pyarrow as pa
import pyarrow.compute as pc

import smr


class Query2aColumnar(smr.Job):
    INPUT_FORMAT = "csv"
    COLUMNS = ["sourceIP", "destURL", "visitDate", "adRevenue", "userAgent", "countryCode",
               "languageCode", "searchWord", "duration"]
    COLUMN_TYPES = {"sourceIP": "string", "adRevenue": "float64"}
    SELECT = ["sourceIP", "adRevenue"]
    AGGREGATE = {"adRevenue": "sum"}

    def map_batches(self, batch):
        prefix = pc.utf8_slice_codeunits(batch.column("sourceIP"), 0, 8)
        return pa.table({"key": prefix, "adRevenue": batch.column("adRevenue")})
