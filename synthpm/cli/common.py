"""What every command group shares: consoles, options built from configs, where data comes
from, table printing.

A command's options are declared once, as the fields of a pydantic config: a parameter
`config: Annotated[TrainConfig, options("depth", "steps")]` of a function registered with
`command` becomes the options `--depth` and `--steps`, their types, defaults and help taken
from the fields (`Field(description=...)`), and the function is called with the
`TrainConfig` they make. The function itself stays callable with config objects (the demo
calls it so).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from copy import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_args

import numpy as np
import pandas as pd
import typer
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table
from typer.models import OptionInfo

from synthpm.data.errors import SynthpmError
from synthpm.data.store import Store, default_store_path
from synthpm.data.validate import IsoDate
from synthpm.executor import ExecutorConfig

# A pipe or a file gets wide tables instead of rich's 80-column default, which would cut them.
console = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True)


@dataclass(frozen=True)
class Opt:
    """How a command reads one config field, where not as the field declares it."""

    flag: str | None = None  # the option's name where not the field's (`stride`: `--stride`)
    type: Any = None  # e.g. `str` for a Literal the config checks (its error names the field)
    default: Any = ...  # where the command spells the value otherwise (`--scenarios all`)
    help: str | None = None
    parse: Callable[[Any], Any] | None = None  # the option's value → the field's


@dataclass(frozen=True)
class Options:
    """Which fields of a config are a command's options (a dotted name reaches into a nested
    config: `limits.max_positions` is `--max-positions`), and how where not as declared."""

    fields: tuple[str, ...]
    custom: dict[str, Opt] = field(default_factory=dict, hash=False)


def options(*fields: str, **custom: Opt) -> Options:
    return Options(fields, custom)


def command(app: typer.Typer, name: str):
    """Register the decorated function as `app`'s command `name`, each parameter annotated
    `Annotated[Config, options(...)]` spread into those options; returns it unchanged."""

    def register(func: Callable) -> Callable:
        app.command(name)(_with_options(func))
        return func

    return register


def callback(app: typer.Typer):
    """As `command`, for a group's own action (`synthpm serve`, beside `serve token ...`):
    it runs when no subcommand is given."""

    def register(func: Callable) -> Callable:
        app.callback(invoke_without_command=True)(_with_options(func))
        return func

    return register


@dataclass(frozen=True)
class _Leaf:
    """One option of a config parameter: the name Typer passes it under, the field it fills."""

    flag: str
    path: str
    parse: Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Config:
    """A config parameter of a command: the model and the options that fill it."""

    model: type[BaseModel]
    leaves: list[_Leaf]

    def take(self, given: dict[str, Any]) -> BaseModel:
        """The config from its options' values, which leave `given`."""
        values = {}
        for leaf in self.leaves:
            value = given.pop(leaf.flag)
            values[leaf.path] = leaf.parse(value) if leaf.parse else value
        return _build(self.model, values)


def _with_options(func: Callable) -> Callable:
    """`func` as Typer sees it: config parameters replaced by their fields' options."""
    params: list[inspect.Parameter] = []
    configs: dict[str, _Config] = {}
    for param in inspect.signature(func, eval_str=True).parameters.values():
        model, *extras = get_args(param.annotation) or (None,)
        spec = next((e for e in extras if isinstance(e, Options)), None)
        if spec is None:
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        leaves = []
        for path in spec.fields:
            custom = spec.custom.get(path, Opt())
            leaves.append(_Leaf(custom.flag or path.rsplit(".", 1)[-1], path, custom.parse))
            params.append(_option(model, path, leaves[-1].flag, custom))
        configs[param.name] = _Config(model, leaves)

    @functools.wraps(func)
    def run(**given):
        for name, config in configs.items():
            given[name] = config.take(given)
        return func(**given)

    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def _field(model: type[BaseModel], path: str) -> FieldInfo:
    head, _, rest = path.partition(".")
    found = model.model_fields[head]
    return _field(found.annotation, rest) if rest else found


def _option(model: type[BaseModel], path: str, flag: str, custom: Opt) -> inspect.Parameter:
    """The Typer parameter for one field: its type, default and description as help; a
    `typer.Option` among the field's metadata (flag names, an envvar) is kept."""
    found = _field(model, path)
    declared = next((m for m in found.metadata if isinstance(m, OptionInfo)), None)
    info = copy(declared) if declared else typer.Option()
    info.help = custom.help or info.help or found.description
    default = custom.default
    if default is ...:
        default = found.get_default(call_default_factory=True)
    annotation = Annotated[custom.type or found.annotation, info]
    return inspect.Parameter(
        flag, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _build(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """The config from its options' values by dotted field name; a nested config is built
    (and checked) on its own first, so an error names the field as that config does."""
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    for head, inner in nested.items():
        flat[head] = _build(model.model_fields[head].annotation, inner)
    return model(**flat)


# The commands whose work splits into independent pieces run them where these options say.
Scale = Annotated[
    ExecutorConfig,
    options("executor", "workers", "ray_address", executor=Opt(type=str)),
]

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar="SYNTHPM_STORE",
        show_envvar=True,
        help="DuckDB store file [default: ./synthpm.duckdb]",
    ),
]


class DataSource(BaseModel):
    """Where a command reads its data; each command offers the fields it reads as options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: StoreOption = None
    tickers: str | None = Field(None, description="comma-separated tickers [default: all]")
    start: IsoDate | None = Field(None, description="first date (YYYY-MM-DD)")
    end: IsoDate | None = Field(None, description="last date (YYYY-MM-DD)")
    features: str | None = Field(
        None, description="comma-separated features or families [default: all]"
    )
    cache: Path | None = Field(
        None, description="feature cache folder [default: .synthpm-cache by the store]"
    )
    forecasts: Path = Field(
        Path("runs/forecast"),
        description="a `forecast train` output folder (or its forecasts.parquet)",
    )

    def forecasts_file(self) -> Path:
        """The forecasts' Parquet file; SynthpmError while there is none."""
        file = self.forecasts / "forecasts.parquet" if self.forecasts.is_dir() else self.forecasts
        if not file.exists():
            raise SynthpmError(
                f"no forecasts at {file}: run `synthpm forecast train --out {self.forecasts}` first"
            )
        return file


def runs_a_model() -> None:
    """For the commands that run the language model: its large activations reuse the heap
    (`synthpm.lm.heap`). Process-wide, hence set here and never by a library constructor."""
    from synthpm.lm.heap import keep_freed_memory

    keep_freed_memory()


def store_at(path: Path | None) -> Store:
    return Store(path or default_store_path())


def print_frame(frame: pd.DataFrame, title: str | None = None, digits: int = 4) -> None:
    """A DataFrame as a rich table, index included, floats rounded."""
    table = Table(title=title)
    index_names = [n or "" for n in frame.index.names]
    for name in [*index_names, *map(str, frame.columns)]:
        table.add_column(name, justify="left" if name in index_names else "right")
    for key, *values in frame.itertuples(name=None):
        keys = key if isinstance(key, tuple) else (key,)
        table.add_row(*map(str, keys), *(_cell(v, digits) for v in values))
    console.print(table)


def _cell(value, digits: int) -> str:
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.{digits}f}"
    return str(value)
