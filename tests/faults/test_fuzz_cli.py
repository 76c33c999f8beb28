"""The CLI, fuzzed in-process: ``ckl.cli.main(argv)`` always exits cleanly.

Hypothesis builds argv lists for every command of the ``ckl`` click group (read from the group
itself, so a command added later is fuzzed too): the command's own options and arguments with
valid or evil values (negative, huge, NaN, odd unicode, SQL-looking strings, lone surrogates as
argv decoding produces them), unknown options and stray arguments. ``main`` must return 0, 1
or 2 (or 130 when the test's alarm interrupts a command that follows the log forever, such as
``tail`` or ``project``), never raise, and never print a traceback. A command that fails writes
no event. ``--debug`` is left out: showing tracebacks is its documented job.
"""

from __future__ import annotations

import contextlib
import io
import signal
from typing import TYPE_CHECKING, Any

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckl.cli import cli, main
from ledger import Ledger
from tests.faults._support import pick

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import FrameType

    from hypothesis.strategies import DrawFn, SearchStrategy

ALARM = 1.0  # seconds a command may run before the test interrupts it (as Ctrl-C would)
ODD_ARGS = [
    "",
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "99999999999999999999999",
    "x'); DROP TABLE ckl_events; --",
    "\udcff\udcfe",  # undecodable argv bytes, as Python hands them over (surrogateescape)
    "\u202eevil",
    "😀",
    "2026-13-45T99:00:00",
    "--",
    "-",
    "r" * 300,
]
odd_arg = st.one_of(
    st.sampled_from(ODD_ARGS),
    st.text(st.characters(exclude_characters="\x00"), max_size=12),
)
COMMANDS: dict[str, click.Command] = cli.load_all()


def valid_value(param: click.Parameter) -> SearchStrategy[str]:
    kind = param.type
    if isinstance(kind, click.IntRange | click.types.IntParamType):
        return st.integers(0, 30).map(str)
    if isinstance(kind, click.FloatRange | click.types.FloatParamType):
        return st.sampled_from(["0.01", "0.1", "0"])
    if isinstance(kind, click.Path):
        return st.sampled_from(["out.file", "missing/dir/x", "."])
    return st.sampled_from(["run-1", "fuzz", "0", "2026-01-01T00:00:00+00:00"])


@st.composite
def argvs(draw: DrawFn) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    command = COMMANDS[name]
    args: list[str] = [name]
    for param in command.params:
        if not draw(st.booleans()):
            continue
        value = draw(st.one_of(valid_value(param), odd_arg))
        if isinstance(param, click.Option):
            flag = draw(st.sampled_from(param.opts))
            args += [flag] if param.is_flag else [flag, value]
        else:
            args.append(value)
    extras = draw(st.lists(st.one_of(odd_arg, st.just("--no-such-option")), max_size=2))
    order = draw(st.permutations(args[1:]))
    return [args[0], *order, *extras]


class Interrupted(KeyboardInterrupt):
    """Raised by the alarm: the command ran for ALARM seconds."""


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[list[bool]]:
    """Interrupt the main thread after ``seconds`` (as Ctrl-C); the flag says if it fired."""
    fired: list[bool] = []

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        # Interrupt only a running `main`: once it has returned, an interrupt would stop pytest.
        while frame is not None:
            if frame.f_code is main.__code__:
                fired.append(True)
                _on_alarm(signum, frame)
            frame = frame.f_back

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGALRM, signal.SIGTERM)}
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():  # `ckl project` installs its own SIGTERM handler
            signal.signal(sig, handler)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store holding one demo run; the working directory is the test's own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CKL_STORE", raising=False)
    url = f"sqlite:///{tmp_path}/cli.db"
    assert main(["--store", url, "demo", "--run-id", "run-1", "--items", "10", "--chunk", "5"]) == 0
    return url


@settings(
    max_examples=pick(150, 3_000),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
@given(argv=argvs())
def test_every_command_exits_cleanly_on_fuzzed_arguments(store: str, argv: list[str]) -> None:
    with Ledger.open(store) as ledger:
        before = ledger.count_events()
    with real_streams() as (_stdout, stderr), alarm(ALARM) as fired:
        code: Any = main(["--store", store, *argv])
    err = stderr.getvalue()
    allowed = {0, 1, 2, 130} if fired else {0, 1, 2}
    assert code in allowed, (argv, code, err)
    # A crash prints its traceback to stderr; stdout may show a failure's recorded traceback.
    assert "Traceback" not in err, (argv, err)
    if code in {1, 2}:  # refused: nothing written
        with Ledger.open(store) as ledger:
            assert ledger.count_events() == before, (argv, code, err)


class _Output(io.TextIOWrapper):
    def getvalue(self) -> str:
        self.flush()
        buffer = self.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode("utf-8", "backslashreplace")


@contextlib.contextmanager
def real_streams() -> Iterator[tuple[_Output, _Output]]:
    """Stdout and stderr as a UTF-8 terminal gives them to Python, instead of pytest's capture.

    Like the real ones, stdout is strict (printing an undecodable argv byte is an error) and
    stderr replaces what it cannot encode with backslash escapes.
    """
    stdout = _Output(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    stderr = _Output(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        yield stdout, stderr


# Regressions: an empty path or a missing directory used to escape as a raw ValueError or
# FileNotFoundError; now a typed InvalidInput, checked before the store is read.
@pytest.mark.parametrize("path", ["", "missing/dir/anchor"], ids=["empty", "missing-dir"])
def test_verify_writing_an_anchor_where_it_cannot_exits_1(store: str, path: str) -> None:
    with real_streams() as (_stdout, stderr):
        assert main(["--store", store, "verify", "--write-anchor", path]) == 1
    assert "error:" in stderr.getvalue()


@pytest.mark.parametrize("command", ["export", "archive"])
@pytest.mark.parametrize("path", ["", "missing/dir/run.jsonl"], ids=["empty", "missing-dir"])
def test_export_and_archive_to_a_file_they_cannot_write_exit_1(
    store: str, command: str, path: str
) -> None:
    with Ledger.open(store) as ledger:
        before = ledger.count_events()
    with real_streams() as (_stdout, stderr):
        assert main(["--store", store, command, "run-1", path]) == 1
    assert "error:" in stderr.getvalue()
    with Ledger.open(store) as ledger:
        assert ledger.count_events() == before


def test_the_fuzzer_knows_every_command_of_the_group() -> None:
    assert set(COMMANDS) == set(cli.list_commands(click.Context(cli)))
    assert {"demo", "show", "project", "rebuild"} <= set(COMMANDS)


@pytest.mark.parametrize(
    ("run_id", "code"),
    [("[/cyan]odd[bold", 0), ("\udcff\udcfe", 1)],
    ids=["rich-markup", "undecodable-argv"],
)
def test_demo_prints_any_run_id_safely_and_refuses_unprintable_ones(
    store: str, run_id: str, code: int
) -> None:
    """Regression: both run ids made ``ckl demo`` die with a traceback while printing."""
    argv = ["--store", store, "demo", "--run-id", run_id, "--items", "4", "--chunk", "2"]
    with real_streams() as (stdout, stderr):
        assert main(argv) == code
    out, err = stdout.getvalue(), stderr.getvalue()
    assert "Traceback" not in out + err
    if code == 0:
        assert run_id in out
    else:
        assert "error: invalid run_id" in err
