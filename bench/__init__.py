"""Benchmarks of checkpoint-ledger against baselines measured in the same run.

Run ``python -m bench.run`` (``--quick`` for a smoke run, ``--only PART`` for one part): the
full run rewrites ``docs/benchmarks.md`` and ``docs/benchmarks-flow.md``. Every figure is a
ratio against a baseline measured in the same run and on the same server, the variants
interleaved round after round (or window after window, for concurrent writers), so that a noisy
machine moves both sides of a ratio together.
"""
