"""`ServeConfig`: what `synthpm serve` serves and its limits. Apart from the service so the
command line reads it without importing the model's stack (torch, transformers, xgrammar),
which every `synthpm` command would then pay for at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ServeConfig(BaseModel):
    """`synthpm serve`: what it serves and its limits."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(Path("runs/lm"), description="the lm's model folder, loaded once")
    forecasts: Path = Field(
        Path("runs/forecast"), description="a `forecast train` folder: forecasts of each date"
    )
    runs: Path = Field(Path("runs"), description="folder of backtest and compare runs to show")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    max_batch: int = Field(
        256, ge=1, le=4096, description="prompts the batcher gathers into one decoder pass"
    )
    max_wait_ms: float = Field(4.0, ge=0, le=1000, description="how long a pass waits to fill")
    max_items: int = Field(512, ge=1, description="contexts or (ticker, date) pairs a request")
    max_body_kb: int = Field(4096, ge=1, description="request body size limit, KiB")
