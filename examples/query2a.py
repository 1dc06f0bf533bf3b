"""Big Data Benchmark query 2a:

    SELECT SUBSTR(sourceIP, 1, 8), SUM(adRevenue) FROM uservisits
    GROUP BY SUBSTR(sourceIP, 1, 8)

uservisits is comma-separated text: sourceIP, destURL, visitDate, adRevenue, userAgent,
countryCode, languageCode, searchWord, duration.
"""
import smr


class Query2a(smr.Job):
    ASSOCIATIVE = True
    COMBINE = "sum"  # revenues are added up in the map task already

    def map(self, line):
        fields = line.split(",")
        yield fields[0][:8], float(fields[3])

    def reduce(self, prefix, revenues):
        yield prefix, sum(revenues)
