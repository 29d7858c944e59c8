"""`synthpm serve`: the HTTP service and dashboard; `synthpm serve token ...`: its tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from synthpm.cli.common import (
    StoreOption,
    callback,
    console,
    options,
    print_frame,
    runs_a_model,
    store_at,
)
from synthpm.serve.config import ServeConfig
from synthpm.serve.tokens import create_token, list_tokens, revoke_token

serve_app = typer.Typer(
    help="The decision service: the model over HTTP (`/v1`, OpenAPI at /docs) and the "
    "dashboard at `/`. Every /v1 route but /v1/health wants a token: `serve token create`.",
)
token_app = typer.Typer(help="Bearer tokens of the service (only their hashes are stored).")
serve_app.add_typer(token_app, name="token")


@callback(serve_app)
def serve(
    ctx: typer.Context,
    *,
    store: StoreOption = None,
    config: Annotated[
        ServeConfig,
        options(*ServeConfig.model_fields),
    ],
) -> None:
    """Serve the model: the JSON API and the dashboard, reading and writing the store."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from synthpm.serve.api import create_app
    from synthpm.serve.service import Service

    runs_a_model()
    target = store_at(store)
    with console.status(f"loading {config.model}"):
        service = Service(target, config)
    if list_tokens(target).query("revoked_at.isna()").empty:
        console.print("no valid token yet: `synthpm serve token create NAME` makes one")
    console.print(f"serving {service.source} on http://{config.host}:{config.port}/")
    uvicorn.run(create_app(service), host=config.host, port=config.port, log_level="warning")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="who or what the token is for")],
    store: StoreOption = None,
) -> None:
    """Make a token; it is printed once, and only its hash is kept."""
    token = create_token(store_at(store), name)
    console.print(f"token {name!r} (shown once; keep it secret):")
    print(token)


@token_app.command("list")
def token_list(store: StoreOption = None) -> None:
    """The tokens' names and times (never the tokens)."""
    print_frame(list_tokens(store_at(store)).set_index("name"), "tokens")


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="the token's name")], store: StoreOption = None
) -> None:
    """Revoke a token: a running server refuses it within seconds."""
    revoke_token(store_at(store), name)
    console.print(f"revoked {name!r}")
