"""The gateway beside its peers, LiteLLM's proxy and Portkey's AI gateway, on one machine in one run.

``python -m bench.peers`` (``make bench-peers``) installs the peers at pinned versions into ``.peers/`` at the
repository's root (git-ignored), points each at the fake upstream the other benchmarks use, and loads each
target in turn with the same wrk load; ``bench/peers/__main__.py`` says how.
"""
