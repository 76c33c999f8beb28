"""``Ledger.run_states``: read once, then kept up to date from the log, on every backend.

A worker of a shared run asks before every claim, so after the first call only the log after
the last position read is read. Whatever other processes (here: other ``Ledger`` objects on the
same store, each with its own caches) write meanwhile, the states must equal a fresh read.
"""

from __future__ import annotations

import random

from ledger import Ledger
from ledger.application import RUN_VIEW_PAGE


def _fresh(store_url: str, run_id: str) -> dict[int, object]:
    with Ledger.open(store_url) as reader:
        return {i: s.model_dump() for i, s in reader.run_states(run_id).items()}


def _seen(ledger: Ledger, run_id: str) -> dict[int, object]:
    return {i: s.model_dump() for i, s in ledger.run_states(run_id).items()}


def test_run_states_follow_other_writers_and_new_checkpoints(store_url: str) -> None:
    rng = random.Random(13)  # noqa: S311  (a reproducible schedule, not a secret)
    with Ledger.open(store_url) as watcher, Ledger.open(store_url) as other:
        tokens = [other.create_checkpoint("run-a", i) for i in range(3)]
        other.create_checkpoint("run-b", 0)  # another run's events are read past, not kept
        assert _seen(watcher, "run-a") == _fresh(store_url, "run-a")
        items = dict.fromkeys(range(len(tokens)), 0)
        for step in range(60):
            action = rng.choice(["yield", "yield", "yield", "fail", "create", "other-run"])
            index = rng.randrange(len(tokens))
            token = tokens[index]
            state = other.get_checkpoint(token)
            if action == "create":
                tokens.append(other.create_checkpoint("run-a", len(tokens)))
                items[len(tokens) - 1] = 0
            elif action == "other-run":
                other.create_checkpoint("run-b", step + 1)
            elif state.status == "failed":
                other.retry_checkpoint(token)
            elif state.status == "open" and action == "fail":
                other.fail_checkpoint(token, "try again", transient=True, error_type="Boom")
            elif state.status == "open":
                items[index] += 5
                other.checkpoint_yield(token, cursor=items[index], items_processed=items[index])
            if step % 7 == 0:
                assert _seen(watcher, "run-a") == _fresh(store_url, "run-a"), step
        assert _seen(watcher, "run-a") == _fresh(store_url, "run-a")
        assert sorted(watcher.run_states("run-a")) == list(range(len(tokens)))


def test_run_states_catch_up_over_more_than_one_page(store_url: str) -> None:
    with Ledger.open(store_url) as watcher, Ledger.open(store_url) as other:
        token = other.create_checkpoint("run-long", 0)
        assert watcher.run_states("run-long")[0].items_processed == 0
        for n in range(1, RUN_VIEW_PAGE + 50):
            other.checkpoint_yield(token, cursor=n, items_processed=n)
        seen = watcher.run_states("run-long")[0]
        assert seen.items_processed == RUN_VIEW_PAGE + 49
        assert seen.model_dump() == other.get_checkpoint(token).model_dump()
