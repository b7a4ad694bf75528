"""Throughput and scale of spiffile, as ratios to the raw operations it wraps.

Run ``python -m benchmarks`` (``--quick`` in CI); see ``benchmarks/README.md``
for what each row means and the latest full table.  Benchmarks measure and
report; they never assert a timing.
"""

__all__: list[str] = []
