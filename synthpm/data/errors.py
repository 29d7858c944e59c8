"""Errors that name the problem: file, ticker, row, column."""

from __future__ import annotations


class SynthpmError(Exception):
    """Base of every error synthpm raises on purpose; the CLI prints these without a trace."""


class DataError(SynthpmError, ValueError):
    """Bad input data. The message names where: file, ticker, row (1-based, after the header)."""

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        ticker: str | None = None,
        row: int | None = None,
        column: str | None = None,
        count: int = 1,
    ) -> None:
        self.problem, self.source, self.ticker, self.row, self.column = (
            problem,
            source,
            ticker,
            row,
            column,
        )
        self.count = count
        where = [
            part
            for part in (
                source,
                f"ticker {ticker}" if ticker else None,
                f"row {row}" if row is not None else None,
                f"column {column!r}" if column else None,
            )
            if part
        ]
        more = f" ({count - 1} more rows like it)" if count > 1 else ""
        super().__init__(f"{': '.join([', '.join(where), problem]) if where else problem}{more}")


class UnknownTickerError(SynthpmError, KeyError):
    """A request named tickers the store does not hold."""

    def __init__(self, unknown: list[str], known: int, holds: str = "the store holds") -> None:
        self.unknown = unknown
        super().__init__(f"unknown ticker(s) {', '.join(unknown)}: {holds} {known} tickers")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(SynthpmError):
    """A configuration asks for something that cannot be done: names the setting and why.

    Not a ValueError on purpose: pydantic would wrap a ValueError raised in a validator into
    its own ValidationError, burying the message."""


def did_you_mean(name: str, choices) -> str:
    """' (did you mean X?)' when a close match exists, else ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
