"""Property-based fuzzing of every importer (issue 23).

Every generated input is a well-formed file of one importer's layout with one defect
injected (`fuzz_cases`). Whatever the defect, the import either succeeds (the repairs are
documented in docs/usage.md, "Validation": unsorted rows are sorted, inconsistent bars become
close-only with a warning, repeated Form 4 rows are stored once) or raises a `SynthpmError`
naming the file, and the row and column where one value is at fault; a failed import leaves
the store byte-identical. Never another exception type, and a stored ticker always matches
the ticker rule.

`SYNTHPM_FUZZ_EXAMPLES` sets the cases per importer: 25 by default, in `make test`;
`make fuzz` runs 1,000 per importer.
"""

from __future__ import annotations

import os
import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import file_digest
from fuzz_cases import (
    ODD_DATES,
    ODD_NUMBERS,
    ODD_TICKERS,
    ROW_DEFECTS,
    SOURCES,
    defective_edgar,
    defective_table,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from synthpm.data.errors import DataError, SynthpmError
from synthpm.data.importers import run_import
from synthpm.data.store import Store
from synthpm.data.validate import TICKER

EXAMPLES = int(os.environ.get("SYNTHPM_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # seeded: the same cases on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TICKER_TABLES = ("prices", "events", "insider", "sectors", "universe", "companies")


def check_import(store: Store, kind: str, path, defect: str, **options) -> None:
    """The import is refused with a named error and the store untouched, or it succeeds."""
    before = file_digest(store.path)
    try:
        run_import(store, kind, path, **options)
    except SynthpmError as error:
        event(f"{defect}: refused ({type(error).__name__})")
        message = str(error)
        assert str(path) in message, message
        if defect in ROW_DEFECTS and isinstance(error, DataError) and error.row is None:
            # a value in one row is at fault unless the whole file could not be read
            assert "cannot read" in message or "missing column" in message, message
        if isinstance(error, DataError) and error.row is not None:
            assert re.search(r"row \d+, column '", message), message
        assert file_digest(store.path) == before
    else:
        event(f"{defect}: imported")
        with duckdb.connect(str(store.path), read_only=True) as con:  # one connection: fast
            tables = {t for (t,) in con.execute("show tables").fetchall()}
            tickers = " union ".join(
                f"select ticker from {t}" for t in TICKER_TABLES if t in tables
            )
            found = [t for (t,) in con.execute(tickers).fetchall() if t is not None]
            closes = con.execute("select min(close), max(close) from prices").fetchone()
        assert all(re.fullmatch(TICKER, t) for t in found), found
        assert np.isfinite(np.array(closes, dtype=float)).all()


@pytest.mark.parametrize("name", list(SOURCES))
def test_a_defective_file_is_named_or_repaired_and_never_corrupts(priced_store, tmp_path, name):
    source = SOURCES[name]

    @FUZZ
    @given(case=defective_table(source))
    def fuzz(case):
        content, defect = case
        if source.kind == "stooq":  # a folder of files named by ticker
            path = tmp_path / "stooq" / f"aaa{source.suffix}"
            path.parent.mkdir(exist_ok=True)
        else:
            path = tmp_path / f"fuzz{source.suffix}"
        path.write_bytes(content)
        check_import(priced_store, source.kind, path, defect, **source.options)

    fuzz()


def test_a_defective_edgar_file_is_named_and_never_corrupts(priced_store, tmp_path):
    @FUZZ
    @given(case=defective_edgar())
    def fuzz(case):
        content, defect = case
        path = tmp_path / "edgar" / "CIK0000000001.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        check_import(priced_store, "edgar", path, defect)

    fuzz()


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


@FUZZ
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
