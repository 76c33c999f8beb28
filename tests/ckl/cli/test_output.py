"""``ckl.cli._output``: text a worker chose never reaches the terminal raw; idle times read well."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from ckl.cli._output import cell, echo_json, fmt_idle, fmt_value, printable

HOSTILE = "a\x1b[2Jb\x07c\x9bd\u202ee\u2028f\x7fg"


def test_printable_escapes_every_control_character_on_one_line() -> None:
    assert printable(HOSTILE) == "a\\x1b[2Jb\\x07c\\x9bd\\u202ee\\u2028f\\x7fg"
    assert printable("two\nlines\tand tab") == "two\\x0alines\\x09and tab"
    assert printable("plain text, üñí ✓") == "plain text, üñí ✓"


def test_a_block_keeps_its_lines_and_tabs_and_escapes_the_rest() -> None:
    trace = "Traceback:\n\tline 1\x1b[31m\r\n"
    assert printable(trace, block=True) == "Traceback:\n\tline 1\\x1b[31m\\x0d\n"


def test_a_cell_shows_markup_as_text_and_no_control_character() -> None:
    console = Console(width=200, record=True, emoji=False)
    console.print(cell("[/] [red]not red[/red] " + HOSTILE))
    shown = console.export_text()
    assert "[/] [red]not red[/red] a\\x1b[2Jb" in shown
    assert "\x1b" not in shown


def test_json_output_escapes_what_json_dumps_leaves_raw(capsys: pytest.CaptureFixture[str]) -> None:
    echo_json({"message": HOSTILE, "ok": "üñí"})
    out = capsys.readouterr().out
    assert json.loads(out) == {"message": HOSTILE, "ok": "üñí"}  # the same document
    for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\u2028", "\x7f"):
        assert raw not in out
    assert "üñí" in out  # other non-ASCII text stays readable
    assert (
        fmt_value({"k": HOSTILE}) == '{"k":"a\\u001b[2Jb\\u0007c\\u009bd\\u202ee\\u2028f\\u007fg"}'
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0s"),
        (42.9, "42s"),
        (60.0, "1m00s"),
        (192.0, "3m12s"),
        (3600.0, "1h00m"),
        (7500.0, "2h05m"),
        (86400.0 * 3 + 3600 * 4 + 59, "3d04h"),
    ],
)
def test_idle_times_read_like_a_clock(seconds: float, shown: str) -> None:
    assert fmt_idle(seconds) == shown
