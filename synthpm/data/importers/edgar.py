"""EDGAR submissions JSON: 8-K items and Form 4 filings become events.

Reads both layouts EDGAR serves: `CIK##########.json` (company facts, with parallel arrays
under `filings.recent`) and `CIK##########-submissions-NNN.json` (older filings as flat
parallel arrays, with no company facts; their ticker comes from the company file of the same
CIK in the folder, or from a previous import). Filers without a ticker (people, private
funds) are kept in `companies` and their filings skipped, counted in the report.

One event per 8-K item ("2.02,9.01" gives two); a Form 4 filed about an issuer is an
`insider_filing` event of that issuer. `date_known` follows the acceptance time (see
`synthpm.data.calendar`). The same filing listed in several files is stored once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from synthpm.data.calendar import known_from_acceptance
from synthpm.data.errors import DataError
from synthpm.data.store import ImportBatch
from synthpm.data.taxonomy import INSIDER_FILING, NO_ITEMS, classify_item
from synthpm.data.validate import check_tickers
from synthpm.progress import track

EIGHT_K_FORMS = ("8-K", "8-K/A")
INSIDER_FORMS = ("4", "4/A")
FILING_FIELDS = ("accessionNumber", "filingDate", "acceptanceDateTime", "form", "items")
CIK_IN_NAME = re.compile(r"CIK0*(\d+)", re.IGNORECASE)


def import_edgar(path: Path, *, known_companies: pd.DataFrame | None = None) -> ImportBatch:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError("no EDGAR .json files in folder", source=str(path))
    docs = [(f, _load(f)) for f in track(files, "reading EDGAR files", total=len(files))]

    companies = {}
    for file, doc in docs:
        if "filings" in doc:
            company = _company(doc, file)
            companies[company["cik"]] = company
    tickers = {c["cik"]: c["ticker"] for c in companies.values()}
    if known_companies is not None:
        for cik, ticker in zip(known_companies["cik"], known_companies["ticker"], strict=True):
            tickers.setdefault(cik, ticker)

    frames, skipped = [], {"filings_without_ticker": 0}
    for file, doc in docs:
        filings = doc["filings"]["recent"] if "filings" in doc else doc
        cik = _cik(doc, file)
        table = _filings_frame(filings, file)
        ticker = tickers.get(cik)
        relevant = table["form"].isin(EIGHT_K_FORMS + INSIDER_FORMS)
        if ticker is None:
            skipped["filings_without_ticker"] += int(relevant.sum())
            continue
        frames.append(table[relevant].assign(ticker=ticker, cik=cik))

    filings = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*FILING_FIELDS, "ticker", "cik"])
    )
    filings = filings.drop_duplicates(["ticker", "accessionNumber"])
    events = _events(filings)
    eight_k = filings[filings["form"].isin(EIGHT_K_FORMS)]
    notes = {
        "files": len(files),
        "8k_filings": len(eight_k),
        "8k_filings_with_items": int((eight_k["items"].fillna("").str.strip() != "").sum()),
        "form4_filings": int(filings["form"].isin(INSIDER_FORMS).sum()),
        **skipped,
    }
    warnings = []
    if skipped["filings_without_ticker"]:
        no_ticker = [c["name"] for c in companies.values() if c["ticker"] is None]
        warnings.append(
            f"{skipped['filings_without_ticker']} 8-K/Form 4 filing(s) skipped from filers with "
            f"no ticker: {', '.join(map(str, no_ticker[:8]))}{' ...' if len(no_ticker) > 8 else ''}"
        )
    frames_out = {"events": events}
    if companies:
        frames_out["companies"] = pd.DataFrame(companies.values())
    return ImportBatch("edgar", str(path), frames_out, warnings, notes)


def _load(file: Path) -> dict:
    try:
        doc = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON: {exc}", source=str(file)) from exc
    if not isinstance(doc, dict) or not ("filings" in doc or "accessionNumber" in doc):
        raise DataError(
            "not an EDGAR submissions file (no `filings.recent` and no flat `accessionNumber`)",
            source=str(file),
        )
    if "filings" in doc and not (
        isinstance(doc["filings"], dict) and isinstance(doc["filings"].get("recent"), dict)
    ):
        raise DataError("`filings.recent` is not an object of filing arrays", source=str(file))
    return doc


def _cik(doc: dict, file: Path) -> str:
    if doc.get("cik"):
        cik = str(doc["cik"]).strip()
        if not cik.isdigit():
            raise DataError(f"cik {doc['cik']!r} is not a number", source=str(file), column="cik")
        return str(int(cik))
    match = CIK_IN_NAME.search(file.name)
    if not match:
        raise DataError(
            "cannot tell the CIK: no `cik` field and none in the file name", source=str(file)
        )
    return str(int(match.group(1)))


def _company(doc: dict, file: Path) -> dict:
    listed = doc.get("tickers") or []
    if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
        raise DataError("`tickers` is not a list of strings", source=str(file), column="tickers")
    given = pd.DataFrame({"ticker": [t for t in listed if t.strip()], "_source": str(file)})
    tickers = check_tickers(given).tolist()  # the rule every importer applies
    return {
        "cik": _cik(doc, file),
        "ticker": tickers[0] if tickers else None,
        "name": doc.get("name"),
        "sic": str(doc.get("sic") or "") or None,
        "sic_description": doc.get("sicDescription") or None,
        "tickers": ",".join(tickers) or None,
    }


def _filings_frame(filings: dict, file: Path) -> pd.DataFrame:
    missing = [f for f in FILING_FIELDS if f not in filings and f != "acceptanceDateTime"]
    if missing:
        raise DataError(f"missing filing field(s) {missing}", source=str(file))
    for name in FILING_FIELDS:
        values = filings.get(name, [])
        if not isinstance(values, list):
            raise DataError("not an array of filings", source=str(file), column=name)
        odd = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
        if odd:
            raise DataError(
                f"{values[odd[0]]!r} is not text", source=str(file), row=odd[0] + 1, column=name
            )
    lengths = {len(filings[f]) for f in FILING_FIELDS if f in filings}
    if len(lengths) > 1:
        raise DataError(f"filing arrays of unequal lengths {sorted(lengths)}", source=str(file))
    n = lengths.pop()
    table = pd.DataFrame({f: filings.get(f, [None] * n) for f in FILING_FIELDS}, dtype=object)
    bad = pd.to_datetime(table["filingDate"], errors="coerce").isna() & table["form"].isin(
        EIGHT_K_FORMS + INSIDER_FORMS
    )
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"unparseable filingDate {table['filingDate'][i]!r}",
            source=str(file),
            row=i + 1,
            column="filingDate",
        )
    unnamed = table["accessionNumber"].fillna("").str.strip().eq("").to_numpy()
    if unnamed.any():
        i = int(unnamed.nonzero()[0][0])
        raise DataError("missing accessionNumber", source=str(file), row=i + 1,
                        column="accessionNumber")  # fmt: skip
    return table


def _events(filings: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "ticker",
        "cik",
        "date_known",
        "filing_date",
        "form",
        "item",
        "event_type",
        "detail",
        "source_id",
    ]
    if filings.empty:
        return pd.DataFrame(columns=columns)
    filings = filings.assign(
        date_known=known_from_acceptance(filings["acceptanceDateTime"], filings["filingDate"]),
        filing_date=pd.to_datetime(filings["filingDate"]),
        item=filings["items"].fillna("").str.replace(" ", "").str.split(","),
    )
    eight_k = filings[filings["form"].isin(EIGHT_K_FORMS)].explode("item")
    eight_k["item"] = eight_k["item"].replace("", None)
    # a filing with no items: an empty string became None (NaN under pandas 3), never an item
    kinds = eight_k["item"].map(lambda i: classify_item(i) if isinstance(i, str) else NO_ITEMS)
    # object dtype: mapped str values would take pandas' string dtype
    eight_k["event_type"] = kinds.map(lambda kind: kind.event_type).astype(object)
    eight_k["detail"] = kinds.map(lambda kind: kind.meaning).astype(object)
    eight_k["source_id"] = eight_k["accessionNumber"] + "#" + eight_k["item"].fillna("")
    insider = filings[filings["form"].isin(INSIDER_FORMS)].assign(
        item=None, event_type=INSIDER_FILING.event_type, detail=INSIDER_FILING.meaning
    )
    insider["source_id"] = insider["accessionNumber"]
    events = pd.concat([eight_k, insider], ignore_index=True)[columns]
    return events.drop_duplicates(["ticker", "source_id"]).reset_index(drop=True)
