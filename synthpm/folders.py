"""Crash-safe writes of result folders and files: a kill -9 at any moment leaves the earlier
result whole, or the new one whole, never a mix.

A folder is written into a hidden partial sibling (`.NAME.partial-PID`) and swapped in by
renames when complete; partial folders a killed writer left behind are removed by the next
writer. A file is written beside its target and renamed over it (`os.replace` is atomic on
one filesystem).

Replacing a folder deletes the earlier one, so only a result folder is replaced: one this
module wrote (it holds `MARK`), an empty one, or one holding the writer's `signature` file (a
result written before the mark existed). Anything else, the working folder above all, is
refused with an error naming it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthpm.data.errors import ConfigError

MARK = ".synthpm-result"


@contextmanager
def atomic_folder(out: str | os.PathLike, signature: str) -> Iterator[Path]:
    """Yield an empty folder to write `out` into; on success it replaces `out` whole, on an
    error it is removed and `out` is left as it was. `signature`: a file every result of this
    writer holds (see the module's note)."""
    out = Path(out)
    _check_replaceable(out, signature)
    partial = _fresh_partial(out)
    try:
        (partial / MARK).touch()
        yield partial
        _swap_in(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it replaces `path`, so a
    reader sees the old file or the new one, never a torn one."""
    path = Path(path)
    if not path.name or path.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder: name a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """`atomic_file` for text (UTF-8) or bytes."""
    with atomic_file(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def _check_replaceable(out: Path, signature: str) -> None:
    here = Path.cwd()
    if not out.name or out.resolve() in (here, *here.parents, Path.home()):
        raise ConfigError(f"{str(out)!r} is the working folder or above it: name a new folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out} is a file: name a folder for the results")
    ours = (out / MARK).exists() or (out / signature).exists() or not any(out.iterdir())
    if not ours:
        raise ConfigError(
            f"{out} holds files that are not a synthpm result (no {signature}), and writing "
            "the results would replace it: name a new folder, or empty it"
        )


def _fresh_partial(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    partial.mkdir()
    return partial


def _swap_in(partial: Path, out: Path) -> None:
    """Renames only: `out` is the earlier folder whole or the new one whole (between the two
    renames it is absent for a moment; a kill there leaves the new one as the partial, and
    the earlier one as `-old`, both removed by the next writer)."""
    old = out.parent / f"{partial.name}-old"
    if out.exists():
        os.replace(out, old)
    os.replace(partial, out)
    shutil.rmtree(old, ignore_errors=True)
