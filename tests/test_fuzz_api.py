"""Property-based fuzzing of the HTTP API's request bodies and queries.

Each case sends `/v1/signals`, `/v1/decide` or `/v1/journal` a request with one defect: a
well-formed body with one field replaced by a value of another kind, a field dropped or
added, or a body that is not JSON at all. The answer is a 4xx whose `detail` says what is
wrong (or a 200 where the defect happens to be valid: a dropped `dry_run` decides for
real), never a 500, and a refused request writes nothing to the journal.

`SYNTHPM_FUZZ_EXAMPLES` sets the cases (25 here by default, half the other surfaces' 50: a
case is a request through the whole app; `make fuzz` runs 1,000).
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, httpx) is not installed")

from fastapi.testclient import TestClient

from synthpm.data.store import Store
from synthpm.journal.records import read_journal
from synthpm.serve.api import create_app
from synthpm.serve.config import ServeConfig
from synthpm.serve.service import Service

EXAMPLES = int(os.environ.get("SYNTHPM_FUZZ_EXAMPLES", "25"))
ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=30), st.sampled_from(["", "2021-02-30", "1850-01-01", "T0", "ZZZ", "full",
                                           "9" * 60, "nan", "../x", "<b>"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                         max_size=2),
)  # fmt: skip


@pytest.fixture(scope="module")
def served(serve_world):
    world = serve_world
    config = ServeConfig(model=world.model, forecasts=world.forecasts, runs=world.runs,
                         max_items=16, max_body_kb=64)  # fmt: skip
    with TestClient(create_app(Service(Store(world.store_path), config))) as client:
        client.headers["Authorization"] = f"Bearer {world.token}"
        yield client, world


def well_formed(world, route: str) -> dict:
    day = str(world.fridays[-1].date())
    if route == "/v1/signals":
        return {"items": [{"ticker": "T1", "date": day}], "mode": "signal"}
    held = {"ticker": "T0", "shares": 10, "cost_basis": 50.0, "entry_date": "2021-01-04"}
    return {"date": day, "account": "fuzz", "book": {"cash": 1000.0, "positions": [held]},
            "mode": "signal", "dry_run": True}  # fmt: skip


def defective(body: dict, data) -> dict | bytes:
    """`body` with one defect, drawn by hypothesis."""
    kind = data.draw(st.sampled_from(["replace", "drop", "add", "nested", "raw"]))
    body = json.loads(json.dumps(body))
    paths = [(body, k) for k in body]
    for value in body.values():
        for inner in value if isinstance(value, list) else [value]:
            if isinstance(inner, dict):
                paths += [(inner, k) for k in inner]
                for deeper in inner.get("positions", []):
                    paths += [(deeper, k) for k in deeper]
    where, key = data.draw(st.sampled_from(paths))
    if kind in ("replace", "nested"):
        where[key] = data.draw(ODD)
    elif kind == "drop":
        del where[key]
    elif kind == "add":
        where[data.draw(st.text(min_size=1, max_size=8))] = data.draw(ODD)
    else:
        return data.draw(st.binary(max_size=200))
    return body


@pytest.mark.parametrize("route", ["/v1/signals", "/v1/decide"])
def test_a_defective_request_gets_a_4xx_and_writes_nothing(served, route):
    client, world = served
    store = Store(world.store_path)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data())
    def case(data):
        body = defective(well_formed(world, route), data)
        before = len(read_journal(store, columns=["id"]))
        if isinstance(body, bytes):
            reply = client.post(route, content=body, headers={"content-type": "application/json"})
        else:
            reply = client.post(route, json=body)
        assert reply.status_code in (200, 400, 404, 409, 413, 422), (body, reply.text)
        if reply.status_code != 200:  # a refusal names its problem and writes nothing
            assert reply.json()["detail"], reply.text
            assert len(read_journal(store, columns=["id"])) == before

    case()


def test_odd_journal_queries_get_a_4xx_or_an_answer(served):
    client, _ = served

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(params=st.dictionaries(
        st.sampled_from(["source", "account", "ticker", "decision", "status", "start", "end",
                         "limit", "offset", "other"]),
        st.one_of(st.text(max_size=20), st.integers(-5, 10**6).map(str)), max_size=4))  # fmt: skip
    def case(params):
        reply = client.get("/v1/journal", params=params)
        assert reply.status_code in (200, 422), (params, reply.text)

    case()
