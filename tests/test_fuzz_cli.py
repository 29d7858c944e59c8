"""Property-based fuzzing of the command line's options (issue 23).

Every leaf command is found by walking the app, so a new command or option is fuzzed
without a change here. Each case runs `synthpm.cli.main` in this process with one defect: a
value of the wrong kind for one of the command's options (chosen by the option's type), an
unknown option, an option without its value, an extra argument. The command either runs
(exit 0) or prints one line, `error: ...`, and exits 2: never a traceback, never another
status. Commands run against a small priced store, so defects that pass parsing reach the
code behind them.

`SYNTHPM_FUZZ_EXAMPLES` sets the cases (50 by default; `make fuzz` runs 1,000).
"""

from __future__ import annotations

import os
import sys

import pytest
import typer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from synthpm.cli import app, main

EXAMPLES = int(os.environ.get("SYNTHPM_FUZZ_EXAMPLES", "50"))
# `demo` runs the whole job on the embedded data whatever its options say; `data fetch`
# downloads (tested offline in test_live.py)
SKIP = {("demo",), ("data", "fetch")}
BAD = {
    "integer": ["abc", "-1", "0", "1e999", "", "99999999999999999999", "٣", "1.5"],
    "float": ["nan", "inf", "-1", "abc", "1e309", "", "-0"],
    "path": ["", "/nonexistent/x/y.csv", "\x00", "a" * 300, ".", "~", "-"],
    "text": ["", "2020-13-45", "nope", "ü", "a,b,,c", "X" * 300, "-1", "1850-01-01", "2999-01-01"],
}


def leaves(group, path=()) -> list[tuple[tuple[str, ...], object]]:
    """Every runnable command: (words after `synthpm`, click command)."""
    found = []
    for name, command in sorted(getattr(group, "commands", {}).items()):
        if (*path, name) in SKIP:
            continue
        if getattr(command, "commands", None):
            found += leaves(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


COMMANDS = leaves(typer.main.get_command(app))


def kind(param) -> str:
    """integer, float, path or text, from the option's annotation (`Path | None` included)."""
    descriptor = getattr(param, "type_descriptor", None)
    name = str(getattr(descriptor, "annotation", "")).lower()
    for word, found in (("int", "integer"), ("float", "float"), ("path", "path")):
        if word in name:
            return found
    return "text"


@st.composite
def command_line(draw, store: str, tmp: str) -> list[str]:
    words, command = draw(st.sampled_from(COMMANDS))
    argv = [*words]
    for param in command.params:  # the required ones, plausibly filled
        if param.required:
            value = {"path": f"{tmp}/missing", "integer": "1", "float": "1"}.get(kind(param), "AAA")
            argv += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    if any("--store" in p.opts for p in command.params):
        argv += ["--store", store]
    options = [p for p in command.params if p.param_type_name == "option" and not p.is_flag]
    defect = draw(st.sampled_from(["value", "value", "value", "unknown", "no_value", "extra"]))
    if defect == "value" and options:
        param = draw(st.sampled_from(options))
        argv += [param.opts[0], draw(st.sampled_from(BAD[kind(param)]))]
        event(f"value for a {kind(param)} option")
    elif defect == "unknown":
        argv += ["--nope"]
    elif defect == "no_value" and options:
        argv += [draw(st.sampled_from(options)).opts[0]]
    else:
        argv += ["extra"]
    return argv


@pytest.fixture
def cli_store(priced_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders land in the test's folder
    return str(priced_store.path), str(tmp_path)


def test_every_command_is_found():
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"data import", "backtest", "compare", "lm train", "journal add", "decide"} <= names


def test_any_bad_option_exits_2_with_one_line_and_no_traceback(cli_store, capsys, monkeypatch):
    store, tmp = cli_store

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(argv=command_line(store, tmp))
    def fuzz(argv):
        monkeypatch.setattr(sys, "argv", ["synthpm", *argv])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main()
            sys.exit(0)
        stderr = capsys.readouterr().err
        assert exit_.value.code in (0, 2), f"{argv}: exit {exit_.value.code}\n{stderr}"
        assert "Traceback" not in stderr, f"{argv}:\n{stderr}"
        if exit_.value.code == 2:
            lines = [line for line in stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{argv}:\n{stderr}"
        event(f"exit {exit_.value.code}")

    fuzz()
