"""The benchmark: what the gateway adds, in latency and throughput, over calling the upstream directly.

One command (``make bench``, i.e. ``python -m bench``) prepares a dedicated database and Redis db, starts the
fake upstream (tests/upstream.py) and one uvicorn gateway process, then measures each number twice in the same
run, "direct" (load generator -> upstream) and "through the gateway" (load generator -> gateway -> upstream),
with the same load generator and the same upstream process, one right after the other. On a small machine the
generator, the upstream and the gateway share the CPUs, so only such side-by-side numbers are comparable.

It is a measurement, not a test: a missed target is reported (MISS) and the exit code stays 0. The exit code
is non-zero only when the benchmark itself could not run. Results go to ``bench/results/latest.json``.
"""
