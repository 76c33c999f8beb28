"""checkpoint-ledger's top layer: the ``ckl`` command line and the sample job.

Live streams and completion signals (reactivex) arrive here with the streams issue.
"""
