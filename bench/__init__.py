"""Benchmarks of checkpoint-ledger against baselines measured in the same run.

Run ``python -m bench.run`` (``--quick`` for a smoke run); the full run rewrites
``docs/benchmarks.md``. Every figure is a ratio against a baseline measured in the same process
and on the same server, with the variants interleaved round after round, so that a noisy
machine moves both sides of a ratio together.
"""
