"""DBOS Transact, the peer users would pick instead: one step checkpoint against our yield.

DBOS records a workflow's input when it starts, each step's output (or exception) when the step
returns, and the workflow's outcome when it ends, in its system database (``dbos.workflow_status``,
``dbos.operation_outputs``). A batch job's checkpoint in DBOS is therefore a step: its return
value is what a resumed workflow gets back instead of running the step again.

Measured, on the same PostgreSQL server as the ledger (DBOS's system database is a database of
its own there, ``synchronous_commit=on`` set on it), after ``DBOS.launch()`` (not counted):

* ``dbos-step``: one call of a ``@DBOS.step()`` function returning the same cursor,
  items_processed and accumulated_results as a yield, inside a running ``@DBOS.workflow()``:
  DBOS's check for an already recorded output, the call, serialising the output and its insert
  (one durable commit). The comparison runs inside one workflow, so that each step is one
  checkpoint of a long-running job, interleaved with our ``checkpoint_yield`` and the raw insert;
* ``dbos-workflow``: a whole workflow of one such step, started and awaited (the workflow's
  status row, the step, its outcome): what a job that makes each batch a workflow pays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING

import psycopg
from dbos import DBOS, DBOSConfig

from bench._baselines import PostgresRaw
from bench._harness import Comparison, Variant, log, measure, run_interleaved, timed
from bench._workload import Feed, open_ledger, representative_state, warm_yield_op, yield_payload

if TYPE_CHECKING:
    from bench._harness import Timing
    from bench._scale import ScaleProfile

__all__ = ["DbosResults", "run_dbos"]

_APP = "ckl-bench"


@dataclass
class DbosResults:
    """What the DBOS section measured."""

    version: str
    step: Comparison
    workflow: Comparison
    output_bytes: float
    """Mean stored size of a step's output (DBOS's serialised form)."""
    state_bytes: int
    """Our stored event for the same yield."""
    steps_recorded: int
    steps_called: int
    durability: str


def _setting(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    return "?" if row is None else str(row[0])


def run_dbos(profile: ScaleProfile, *, ledger_url: str, dbos_url: str) -> DbosResults:
    """The DBOS comparison; ``dbos_url`` is an empty database on the ledger's server."""
    with psycopg.connect(dbos_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        conn.execute(f'ALTER DATABASE "{name[0]}" SET synchronous_commit = on')
    durability = f"synchronous_commit={_setting(dbos_url, 'synchronous_commit')}"
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config=DBOSConfig(name=_APP, system_database_url=dbos_url, log_level="WARNING"))
    calls = [0]

    @DBOS.step()
    def record_progress(step: int) -> dict[str, object]:
        calls[0] += 1
        cursor, items, results = yield_payload(step)
        return {"cursor": cursor, "items_processed": items, "accumulated_results": results}

    @DBOS.workflow()
    def one_step_batch(step: int) -> dict[str, object]:
        return record_progress(step)

    step_result: list[Comparison] = []
    state = representative_state()
    raw = PostgresRaw(ledger_url, state)
    ledger = open_ledger(ledger_url)

    @DBOS.workflow()
    def long_job() -> None:
        """Every step of the comparison is one checkpoint of this one workflow."""
        counter = [0]

        def step_op() -> Timing:
            counter[0] += 1
            return measure(lambda: record_progress(counter[0]))

        feed = Feed(ledger.create_checkpoint("bench-dbos", 0))
        variants = [
            Variant("raw", timed(raw.insert), profile.dbos_batch),
            Variant("yield", warm_yield_op(ledger, feed), profile.dbos_batch),
            Variant("dbos-step", step_op, profile.dbos_batch),
        ]
        step_result.append(
            run_interleaved(
                "PostgreSQL DBOS step vs yield",
                variants,
                rounds=profile.dbos_rounds,
                warmup=profile.dbos_warmup,
            )
        )

    try:
        DBOS.launch()
        log(f"DBOS {version('dbos')} launched")
        long_job()
        workflow_feed = Feed(ledger.create_checkpoint("bench-dbos", 1))
        batches = [0]

        def workflow_op() -> Timing:
            batches[0] += 1
            return measure(lambda: one_step_batch(batches[0]))

        workflow = run_interleaved(
            "PostgreSQL DBOS one-step workflow vs yield",
            [
                Variant("yield", warm_yield_op(ledger, workflow_feed), profile.dbos_workflow_batch),
                Variant("dbos-workflow", workflow_op, profile.dbos_workflow_batch),
            ],
            rounds=profile.dbos_workflow_rounds,
            warmup=3,
        )
        recorded, output_bytes = _recorded(dbos_url, record_progress.__qualname__)
        steps_called = calls[0]
    finally:
        DBOS.destroy(destroy_registry=True)
        ledger.close()
        raw.close()
    return DbosResults(
        version=version("dbos"),
        step=step_result[0],
        workflow=workflow,
        output_bytes=output_bytes,
        state_bytes=len(state),
        steps_recorded=recorded,
        steps_called=steps_called,
        durability=durability,
    )


def _recorded(dbos_url: str, function: str) -> tuple[int, float]:
    """How many step outputs DBOS recorded for ``function``, and their mean stored size."""
    with psycopg.connect(dbos_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), avg(octet_length(output)) FROM dbos.operation_outputs"
            " WHERE function_name LIKE %s",
            (f"%{function.rsplit('.', 1)[-1]}",),
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0)
