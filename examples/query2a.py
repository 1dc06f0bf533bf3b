"""Big Data Benchmark query 2a:

    SELECT SUBSTR(sourceIP, 1, 8), SUM(adRevenue) FROM uservisits
    GROUP BY SUBSTR(sourceIP, 1, 8)

uservisits is comma-separated text: sourceIP, destURL, visitDate, adRevenue, userAgent,
countryCode, languageCode, searchWord, duration.
"""
import smr


class Query2a(smr.Job):
    ASSOCIATIVE = True

    def map(self, line):
        fields = line.split(",")
        yield fields[0][:8], float(fields[3])

    def combine(self, prefix, revenues):
        yield prefix, sum(revenues)

    reduce = combine
