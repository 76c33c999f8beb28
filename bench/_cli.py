"""The command's arguments and report publishing (``python -m bench.run``, ``bench.flow``)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench._harness import log

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["PARTS", "Options", "finish", "flow_path", "parse", "publish"]

PARTS = ("append", "scale", "flow", "startup", "replay", "http", "replica")
"""The parts of the suite: the append path (sections 1-4), concurrent writers and DBOS
(sections 5-6), the read side (docs/benchmarks-flow.md), start-up (section 7), and ``ckl
replay`` of big runs (section 9), ``ckl serve`` (section 11), and a primary with a hot standby
(section 12, PostgreSQL only)."""


@dataclass(frozen=True)
class Options:
    """The command's options; ``out`` is None when nothing is to be written."""

    quick: bool
    backend: str
    parts: tuple[str, ...]
    out: Path | None


def parse(
    argv: Sequence[str] | None, *, prog: str, description: str, default_out: Path, quick_help: str
) -> Options:
    """Parse ``--quick``, ``--backend``, ``--only`` and ``--out``.

    A full run of every part writes ``default_out`` (and its ``-flow`` sibling); a quick or
    partial run writes only where ``--out`` says.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgres", "all"], default="all", help="default: all"
    )
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="run only this part (repeatable): append = sections 1-4 (yield, history, tasker, "
        "eventsourcing), scale = sections 5-6 (concurrent writers, DBOS), flow = the read side "
        "(benchmarks-flow.md), startup = section 7 (ckl --help, the layers' imports), "
        "replay = section 9 (ckl replay of 10k-1M-event runs to a pipe), "
        "http = section 11 (ckl serve: a yield over HTTP, SSE subscribers), "
        "replica = section 12 (a primary and a hot standby: tail lag on each, replication lag, "
        "a synchronous standby's cost; PostgreSQL only). "
        "Default: every part.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown file to write (default: {default_out} for a full run of every part; "
        "a quick or partial run writes no file unless given one). The read side's report goes "
        "beside it, named with -flow (benchmarks-flow.md). Reports are also printed on stdout.",
    )
    args = parser.parse_args(argv)
    parts = tuple(part for part in PARTS if part in (args.only or PARTS))
    everything = parts == PARTS and args.backend == "all"
    out: Path | None = args.out
    if out is None and everything and not args.quick:
        out = default_out
    return Options(quick=args.quick, backend=args.backend, parts=parts, out=out)


def flow_path(out: Path) -> Path:
    """Where the read side's report goes, beside ``out``."""
    return out.with_name(f"{out.stem}-flow{out.suffix}")


def publish(report: str, out: Path | None) -> None:
    """Print the report and write it to ``out`` if given."""
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
        log(f"wrote {out}")


def finish(clock: float) -> None:
    """Log the run's wall time."""
    log(f"done in {time.perf_counter() - clock:.0f}s")
