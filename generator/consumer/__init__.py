"""The consumer SDK: read a data product's published output as yourself.

    from generator.consumer import read

    rows = read("sales/orders", "daily_revenue")            # the latest major
    rows = read("sales/orders", "daily_revenue", major=1)   # pinned; warns while v1 is deprecated

`generator.consumer` is the one import path a consumer needs; the rest of `generator` is the
platform's (docs/consumers.md).
"""

from generator.consumer.reader import AccessRefused, DeprecatedMajorWarning, read, served_majors

__all__ = ["AccessRefused", "DeprecatedMajorWarning", "read", "served_majors"]
