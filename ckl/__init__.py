"""checkpoint-ledger's application layer: the composition root of the three layers.

``ckl`` composes ``ledger``, ``projections`` and ``streams`` for people and other programs:
the ``ckl`` command line (:mod:`ckl.cli`), the Prometheus exporter (:mod:`ckl.metrics`), the
charts (:mod:`ckl.plotting`) and the sample job behind ``ckl demo`` (:mod:`ckl.demo`).
Dependencies point one way, ``ckl → streams → projections → ledger``: nothing below imports
this package. Importing it loads nothing; each module pulls in only what it uses.
"""
