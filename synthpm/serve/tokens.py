"""Bearer tokens of the HTTP service (`synthpm serve token create|list|revoke`).

A token is shown once, when created; the store keeps only its sha256 (`schema.TOKENS`), so
a copy of the store gives no one access. Tokens are 256 random bits, so a plain hash is
enough (a slow password hash guards guessable secrets, which these are not). Revoking keeps
the row with its time, so a name is never reused for another secret by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from datetime import datetime

import pandas as pd

from synthpm.data.errors import ConfigError
from synthpm.data.schema import TOKENS
from synthpm.data.store import ImportBatch, Store

PREFIX = "spm_"
NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
REFRESH_SECONDS = 2.0  # a revoked token stops working within this long in a running server


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def list_tokens(store: Store) -> pd.DataFrame:
    """Every token's name, creation and revocation time (never a hash)."""
    if not store.path.exists() or not store.has_table(TOKENS.name):
        return pd.DataFrame(columns=["name", "created_at", "revoked_at"])
    return store.query("SELECT name, created_at, revoked_at FROM tokens ORDER BY created_at")


def create_token(store: Store, name: str) -> str:
    """A new token named `name`, stored as its hash; returns the token (shown only now)."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"token name {name!r}: use 1-64 letters, digits, '_', '.' or '-'")
    token = PREFIX + secrets.token_urlsafe(32)
    row = pd.DataFrame(
        [{"name": name, "hash": digest(token), "created_at": datetime.now(), "revoked_at": None}]
    ).astype({"revoked_at": "datetime64[ns]"})

    def new_name(con) -> None:  # the table exists here: a write creates every table first
        [(found,)] = con.execute("SELECT count(*) FROM tokens WHERE name = ?", [name]).fetchall()
        if found:
            raise ConfigError(f"a token named {name!r} exists: choose another name")

    store.write(ImportBatch("tokens", f"token create {name}", {TOKENS.name: row}), check=new_name)
    return token


def revoke_token(store: Store, name: str) -> None:
    """Mark the token revoked (its row stays, with the time)."""
    rows = store.query("SELECT * FROM tokens WHERE name = ?", [name]) if _has(store) else None
    if rows is None or rows.empty:
        raise ConfigError(f"no token named {name!r} in {store.path}")
    rows["revoked_at"] = pd.Timestamp(datetime.now())
    store.write(ImportBatch("tokens", f"token revoke {name}", {TOKENS.name: rows}))


def _has(store: Store) -> bool:
    return store.path.exists() and store.has_table(TOKENS.name)


class TokenCheck:
    """Whether a presented token is valid: the store's valid hashes, read again at most every
    `REFRESH_SECONDS` (a query per request would cost more than the request)."""

    def __init__(self, store: Store):
        self.store = store
        self._hashes: frozenset[str] = frozenset()
        self._read_at = -float("inf")

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        now = time.monotonic()
        if now - self._read_at > REFRESH_SECONDS:
            found = (
                self.store.query("SELECT hash FROM tokens WHERE revoked_at IS NULL")["hash"]
                if _has(self.store)
                else []
            )
            self._hashes, self._read_at = frozenset(found), now
        presented = digest(token)
        # compare_digest against each: no early exit that times which prefix matched
        return any(hmac.compare_digest(presented, h) for h in self._hashes)
