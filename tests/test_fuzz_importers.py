"""Property-based fuzzing of the price panel importer and the journal's trades import
(issue 23, a first part).

Every generated file is a well-formed long panel with one defect injected. Whatever the
defect, the import either succeeds (the repairs are documented: unsorted rows are sorted,
inconsistent bars become close-only with a warning) or raises a `SynthpmError` naming the
file, and a failed import leaves the store byte-identical. Never another exception type.
`SYNTHPM_FUZZ_EXAMPLES` sets the number of cases (150 by default; 1,000 for a long run).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from conftest import file_digest, price_panel
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from synthpm.data.errors import SynthpmError
from synthpm.data.importers import run_import
from synthpm.data.store import Store

EXAMPLES = int(os.environ.get("SYNTHPM_FUZZ_EXAMPLES", "150"))
COLUMNS = ["ticker", "date", "open", "high", "low", "close", "volume"]
ODD_TICKERS = ["aa pl", "AA PL;DROP", "", " ", "Ä", "X" * 40, "BRK/B", "$$", "nan", "1e5"]
ODD_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-320", "abc", "", "1,5", "--"]
RENAMES = ["tick", "Date ", "clos", "x", "CLOSE"]
ODD_DATES = ["1850-01-02", "2999-01-01", "not a date", "", "2020-13-45", "20200101", "0"]


@st.composite
def defective_file(draw) -> bytes:
    """A long panel as bytes with one defect."""
    seed = draw(st.integers(0, 10_000))
    frame = price_panel(("AAA", "BBB"), days=draw(st.integers(1, 12)), seed=seed).astype(object)
    row = draw(st.integers(0, len(frame) - 1))
    defect = draw(st.sampled_from([
        "rename", "drop", "number", "ticker", "date", "duplicate", "unsorted", "empty",
        "header_only", "truncate", "binary", "latin1", "extra_column", "blank_line",
    ]))  # fmt: skip
    if defect == "rename":
        column = draw(st.sampled_from(COLUMNS))
        frame = frame.rename(
            columns={column: draw(st.sampled_from(["tick", "Date ", "clos", "x"]))}
        )
    elif defect == "drop":
        frame = frame.drop(columns=draw(st.sampled_from(COLUMNS)))
    elif defect == "number":
        column = draw(st.sampled_from(["open", "high", "low", "close", "volume"]))
        frame.loc[row, column] = draw(st.sampled_from(ODD_NUMBERS))
    elif defect == "ticker":
        frame.loc[row, "ticker"] = draw(st.sampled_from(ODD_TICKERS))
    elif defect == "date":
        frame.loc[row, "date"] = draw(st.sampled_from(ODD_DATES))
    elif defect == "duplicate":
        frame = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
    elif defect == "unsorted":
        frame = frame.sample(frac=1.0, random_state=seed)
    elif defect == "extra_column":
        frame["note"] = "x"
    text = frame.to_csv(index=False)
    if defect == "empty":
        return b""
    if defect == "header_only":
        return text.splitlines()[0].encode()
    if defect == "truncate":
        return text.encode()[: draw(st.integers(1, max(1, len(text) - 1)))]
    if defect == "binary":
        return np.random.default_rng(seed).bytes(draw(st.integers(1, 300)))
    if defect == "latin1":
        return text.replace("AAA", "ÄAA").encode("latin-1")
    if defect == "blank_line":
        lines = text.splitlines()
        lines.insert(draw(st.integers(1, len(lines))), "")
        return "\n".join(lines).encode()
    return text.encode()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # seeded: the same cases on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=defective_file())
def test_a_defective_panel_is_named_or_repaired_and_never_corrupts(priced_store, tmp_path, content):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(content)
    before = file_digest(priced_store.path)
    try:
        run_import(priced_store, "csv", path)
    except SynthpmError as error:
        event(f"refused: {type(error).__name__}")
        assert str(path) in str(error), str(error)
        assert file_digest(priced_store.path) == before
    else:
        event("imported")
        prices = Store(priced_store.path).prices()
        assert prices["close"].gt(0).all() and prices["ticker"].str.fullmatch(r"[A-Z0-9.\-]+").all()


TRADE_COLUMNS = ["ticker", "date", "side", "shares", "price", "rationale"]


@st.composite
def defective_trades(draw) -> bytes:
    """A person's trades file (`journal import`) as bytes with one defect."""
    n = draw(st.integers(1, 6))
    frame = pd.DataFrame(
        {
            "ticker": draw(
                st.lists(st.sampled_from(["AAA", "BBB", "CCC"]), min_size=n, max_size=n)
            ),
            "date": [str(d.date()) for d in pd.bdate_range("2020-01-06", periods=n)],
            "side": draw(st.lists(st.sampled_from(["BUY", "SELL", "buy"]), min_size=n, max_size=n)),
            "shares": [10.0] * n,
            "price": [100.0] * n,
            "rationale": ["because"] * n,
        }
    ).astype(object)
    row = draw(st.integers(0, n - 1))
    defect = draw(st.sampled_from(["rename", "drop", "value", "none", "binary", "empty"]))
    if defect == "rename":
        frame = frame.rename(columns={draw(st.sampled_from(TRADE_COLUMNS)): "x"})
    elif defect == "drop":
        frame = frame.drop(columns=draw(st.sampled_from(TRADE_COLUMNS)))
    elif defect == "value":
        column = draw(st.sampled_from(TRADE_COLUMNS))
        odd = {"ticker": [*ODD_TICKERS, "ZZZ"], "date": [*ODD_DATES, "1990-01-02"],
               "side": ["HOLD", "", "nan"]}.get(column, ODD_NUMBERS)  # fmt: skip
        frame.loc[row, column] = draw(st.sampled_from(odd))
    if defect == "binary":
        return np.random.default_rng(n).bytes(draw(st.integers(1, 200)))
    return b"" if defect == "empty" else frame.to_csv(index=False).encode()


@settings(
    max_examples=EXAMPLES // 3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=defective_trades())
def test_a_defective_trades_file_is_named_and_leaves_the_journal_as_it_was(
    priced_store, tmp_path, content
):
    from synthpm.journal.human import import_trades

    path = tmp_path / "trades.csv"
    path.write_bytes(content)
    before = file_digest(priced_store.path)
    try:
        import_trades(priced_store, path, "fuzz")
    except SynthpmError as error:
        event(f"refused: {type(error).__name__}")
        assert file_digest(priced_store.path) == before
    else:
        event("imported")
