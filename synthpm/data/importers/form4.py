"""Form 4 insider transactions.

Columns as parsed from Form 4 filings (the layout of ../shared/data's Form 4 file):
`ticker, reporting_owner, reporting_owner_cik, reporting_owner_position, transaction_date,
transaction_shares, transaction_price, transaction_type, shares_after_transaction` and an
optional `id`; the short names of the `insider` table (`owner, role, code, shares, price`)
are accepted too.

`date_known`: the filing's acceptance (or filing date, taken as after the close) when the
file has one; otherwise the transaction date plus 2 business days, the Form 4 deadline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.data.calendar import add_business_days, known_from_acceptance
from synthpm.data.importers.tabular import read_table
from synthpm.data.store import ImportBatch
from synthpm.data.validate import (
    MAX_SHARES,
    PRICE_BOUNDS,
    TICKER,
    TICKER_RULE,
    fail_where,
    normalise_columns,
    parse_dates,
    parse_numbers,
)

ALIASES = {
    "reporting_owner": "owner",
    "reporting_owner_cik": "owner_cik",
    "reporting_owner_position": "role",
    "position": "role",
    "transaction_type": "code",
    "transaction_code": "code",
    "transaction_shares": "shares",
    "transaction_price": "price",
    "shares_after_transaction": "shares_after",
    "accession_number": "accession",
}
FILING_DEADLINE_DAYS = 2


def import_form4(path: Path) -> ImportBatch:
    df = normalise_columns(
        read_table(path),
        ["ticker", "owner", "transaction_date", "code", "shares"],
        str(path),
        ALIASES,
    )
    df, warnings = _usable_tickers(df, str(path))  # checked, upper-cased and stripped
    df["transaction_date"] = parse_dates(df, "transaction_date")
    df = parse_numbers(df, ["shares", "price", "shares_after"])
    fail_where(df, df["shares"].isna(), "missing shares", "shares")
    fail_where(df, df["shares"] < 0, "negative shares (a sale is code S, not a sign)", "shares")
    fail_where(df, df["price"] < 0, "negative price", "price")
    for col, bound in (
        ("shares", MAX_SHARES),
        ("price", PRICE_BOUNDS[1]),
        ("shares_after", MAX_SHARES),
    ):
        values = df[col].to_numpy()
        fail_where(
            df, np.isinf(values) | (values > bound), f"implausible {col}: above {bound:g}", col
        )
    code = df["code"].astype("string").str.strip().str.upper()
    fail_where(df, code.isna() | (code == ""), "missing transaction code", "code")
    df["code"] = code.astype(object)

    if "filing_date" in df or "acceptance_datetime" in df:
        accepted = df.get("acceptance_datetime", pd.Series(None, index=df.index, dtype=object))
        filed = df.get("filing_date", pd.Series(None, index=df.index, dtype=object))
        df["date_known"] = known_from_acceptance(accepted.astype("string"), filed)
        late = df["date_known"].isna()
        df.loc[late, "date_known"] = add_business_days(
            df.loc[late, "transaction_date"], FILING_DEADLINE_DAYS
        )
    else:
        df["date_known"] = add_business_days(df["transaction_date"], FILING_DEADLINE_DAYS)

    df["value"] = df["shares"] * df["price"]
    df["source_id"] = _source_ids(df)
    for col in ("owner", "owner_cik", "role"):
        df[col] = (
            df[col].astype("string").str.strip().replace("", pd.NA).astype(object)
            if col in df
            else None
        )
    dup = df.duplicated(["ticker", "source_id"]).sum()
    insider = df.drop_duplicates(["ticker", "source_id"])[
        [
            "ticker",
            "date_known",
            "transaction_date",
            "owner",
            "owner_cik",
            "role",
            "code",
            "shares",
            "price",
            "value",
            "shares_after",
            "source_id",
        ]
    ].reset_index(drop=True)
    warnings += [f"{dup} repeated transaction row(s) stored once"] if dup else []
    future = insider["transaction_date"] > pd.Timestamp.today().normalize()
    if future.any():
        first = insider[future].iloc[0]
        warnings.append(
            f"{int(future.sum())} transaction(s) dated in the future (kept; likely typos in the "
            f"source), e.g. {first['ticker']} {first['transaction_date'].date()}"
        )
    return ImportBatch("form4", str(path), {"insider": insider}, warnings)


def _usable_tickers(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Parsed filings name the issuer's symbol as written: a company with two share classes
    lists both ("LEN, LEN.B"), and a few rows have none ("-") or a typo ("NCLH]"). A
    transaction is the issuer's, so a list is stored under its first symbol; a row with no
    usable symbol cannot be placed and is dropped. Both are repairs, each with a warning."""
    raw = df["ticker"].astype("string").str.strip().str.upper()
    listed = raw.str.contains(",", regex=False).fillna(False).astype(bool)
    first = raw.str.split(",").str[0].str.strip()
    usable = first.str.fullmatch(TICKER).fillna(False).astype(bool)
    if not usable.any():
        fail_where(df, ~usable.to_numpy(), f"no row has a ticker ({TICKER_RULE})", "ticker")
    warnings = []
    if listed.any():
        warnings.append(
            f"{int(listed.sum())} row(s) list several share classes, stored under the first "
            f"(e.g. {raw[listed].iloc[0]!r} -> {first[listed].iloc[0]!r})"
        )
    if not usable.all():
        odd = sorted(set(raw[~usable].fillna("<empty>")))
        warnings.append(
            f"{int((~usable).sum())} row(s) without a usable ticker dropped: "
            f"{', '.join(map(repr, odd[:5]))}{' ...' if len(odd) > 5 else ''}"
        )
    return df[usable.to_numpy()].assign(ticker=first[usable]), warnings


def _source_ids(df: pd.DataFrame) -> pd.Series:
    """The file's own id where it has one, else a digest of the transaction's fields."""
    if "id" in df:
        return "form4:" + df["id"].astype("string")
    if "accession" in df:
        return (
            df["accession"].astype("string") + ":" + df.groupby("accession").cumcount().astype(str)
        )
    # pandas' row hash uses a fixed key, so the id is stable across runs and re-imports.
    fields = df[["ticker", "owner", "transaction_date", "code", "shares", "price"]]
    digest = pd.util.hash_pandas_object(fields, index=False)
    return "form4:" + digest.map("{:016x}".format)
