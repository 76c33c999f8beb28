"""What `python -m bench.run` and `python -m bench.flow` share: arguments and publishing."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench._harness import log

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Options", "parse", "publish"]


@dataclass(frozen=True)
class Options:
    """A benchmark command's options; ``out`` is None when nothing is to be written."""

    quick: bool
    backend: str
    out: Path | None


def parse(
    argv: Sequence[str] | None, *, prog: str, description: str, default_out: Path, quick_help: str
) -> Options:
    """Parse ``--quick``, ``--backend`` and ``--out`` (a full run writes ``default_out``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgres", "all"], default="all", help="default: all"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown file to write (default: {default_out} for a full run; a quick run "
        "writes no file unless given one). The report is also printed on stdout.",
    )
    args = parser.parse_args(argv)
    out: Path | None = args.out if args.out is not None or args.quick else default_out
    return Options(quick=args.quick, backend=args.backend, out=out)


def publish(report: str, out: Path | None, clock: float) -> None:
    """Print the report, write it to ``out`` if given, and log the run's wall time."""
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
        log(f"wrote {out}")
    log(f"done in {time.perf_counter() - clock:.0f}s")
