"""The HTTP service: every endpoint, every error class, the auth rules, the micro-batcher,
concurrent decides against one journal, and the dashboard's page (served HTML)."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, httpx) is not installed")

from fastapi.testclient import TestClient

from synthpm.data.store import Store
from synthpm.journal.records import read_journal
from synthpm.serve import tokens
from synthpm.serve.api import create_app
from synthpm.serve.batcher import Busy, MicroBatcher
from synthpm.serve.config import ServeConfig
from synthpm.serve.service import Service
from synthpm.signals import Signal


@pytest.fixture(scope="module")
def world(serve_world):
    return serve_world


@pytest.fixture(scope="module")
def app(world):
    config = ServeConfig(model=world.model, forecasts=world.forecasts, runs=world.runs,
                         max_items=64, max_body_kb=256)  # fmt: skip
    service = Service(Store(world.store_path), config)
    with TestClient(create_app(service)) as client:
        client.headers["Authorization"] = f"Bearer {world.token}"
        yield client, service


JSON = {"content-type": "application/json"}


def day(world, k: int = -1) -> str:
    return str(world.fridays[k].date())


def journal_size(world) -> int:
    return len(read_journal(Store(world.store_path), columns=["id"]))


# --------------------------------------------------------------------------- auth
def test_every_v1_route_but_health_wants_a_valid_token(app, world):
    client, _ = app
    anonymous = TestClient(client.app)
    assert anonymous.get("/v1/health").status_code == 200
    calls = [("post", "/v1/signals", {"items": [{"ticker": "T0", "date": day(world)}]}),
             ("post", "/v1/decide", {"date": day(world)}), ("get", "/v1/journal", None),
             ("get", "/v1/runs", None), ("get", "/v1/runs/cmp", None),
             ("get", "/v1/book/service", None)]  # fmt: skip
    before = journal_size(world)
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Bearer spm_not-a-token"}, {"Authorization": "x"}):
            reply = anonymous.request(method, path, json=body, headers=headers)
            assert reply.status_code == 401, (path, headers, reply.text)
            assert "bearer token" in reply.json()["detail"]
            assert reply.headers["www-authenticate"] == "Bearer"
    assert journal_size(world) == before


def test_a_revoked_token_is_refused_and_tokens_are_stored_as_hashes(app, world, monkeypatch):
    client, _ = app
    store = Store(world.store_path)
    token = tokens.create_token(store, "short-lived")
    assert token.startswith(tokens.PREFIX)
    monkeypatch.setattr(tokens, "REFRESH_SECONDS", 0.0)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/runs", headers=headers).status_code == 200
    tokens.revoke_token(store, "short-lived")
    assert client.get("/v1/runs", headers=headers).status_code == 401
    stored = store.query("SELECT * FROM tokens")
    assert token not in stored.to_string() and tokens.digest(token) in set(stored["hash"])
    listed = tokens.list_tokens(store)
    assert "hash" not in listed and listed.set_index("name").loc["short-lived", "revoked_at"]
    with pytest.raises(Exception, match="exists"):
        tokens.create_token(store, "short-lived")
    with pytest.raises(Exception, match="no token named"):
        tokens.revoke_token(store, "never-made")


# --------------------------------------------------------------------------- signals
def test_signals_for_pairs_and_for_contexts_agree_with_the_agent(app, world):
    client, service = app
    items = [{"ticker": t, "date": day(world)} for t in ("T3", "T0", "T5")]
    reply = client.post("/v1/signals", json={"items": items})
    assert reply.status_code == 200, reply.text
    got = reply.json()
    assert [s["ticker"] for s in got["signals"]] == ["T3", "T0", "T5"]
    assert got["model"] == service.source and got["mode"] == "signal"
    contexts = service.today(day(world)).contexts_for([i["ticker"] for i in items])
    agent = service.agent  # each alone, unbatched
    direct = [agent.decoder.decode([agent.prompt_ids(c)], mode="signal", **agent.options)[0]
              for c in contexts]  # fmt: skip
    served = [Signal.model_validate(s["signal"]) for s in got["signals"]]
    assert [s.decision for s in served] == [s.decision for s in direct]
    assert [s.conviction for s in served] == pytest.approx([s.conviction for s in direct], abs=1e-3)
    # the same contexts sent whole get the same answers
    whole = client.post(
        "/v1/signals", json={"contexts": [c.model_dump(mode="json") for c in contexts]}
    )
    assert whole.status_code == 200, whole.text
    assert [s["signal"] for s in whole.json()["signals"]] == [s["signal"] for s in got["signals"]]


def test_full_mode_writes_the_reasoning(app, world):
    client, _ = app
    reply = client.post(
        "/v1/signals", json={"items": [{"ticker": "T1", "date": day(world)}], "mode": "full"}
    )
    assert reply.status_code == 200, reply.text
    signal = reply.json()["signals"][0]["signal"]
    assert set(signal) == set(Signal.model_fields) and isinstance(signal["reasoning"], str)


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"items": [{"ticker": "ZZZ", "date": "2021-09-24"}]}, 404, "ZZZ"),
        ({"items": [{"ticker": "T0", "date": "1999-01-04"}]}, 404, "outside the store"),
        ({"items": [{"ticker": "T0", "date": "2021-09-25"}]}, 404, "no prices on 2021-09-25"),
        ({"items": [{"ticker": "t 0!", "date": "2021-09-24"}]}, 422, "ticker"),
        ({"items": [{"ticker": "T0", "date": "24/09/2021"}]}, 422, "date"),
        ({"items": [{"ticker": "T0", "date": "2021-09-24"}], "mode": "long"}, 422, "mode"),
        ({"items": []}, 422, "empty"),
        ({"items": [{"ticker": "T0", "date": "2021-09-24"}] * 65}, 413, "64 at most"),
        ({"contexts": [], "items": []}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"contexts": [{"ticker": "T0"}]}, 422, "date"),
        ({"items": [{"ticker": "T0", "date": "2021-09-24", "extra": 1}]}, 422, "extra"),
    ],
)
def test_bad_signal_requests_get_a_4xx_naming_the_problem(app, body, status, named):
    client, _ = app
    reply = client.post("/v1/signals", json=body)
    assert reply.status_code == status, reply.text
    assert named in reply.text
    assert "Traceback" not in reply.text


def test_malformed_and_oversized_bodies_are_refused(app, world):
    client, _ = app
    reply = client.post(
        "/v1/signals", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 422
    big = b'{"items": [' + b" " * (300 * 1024) + b"]}"
    reply = client.post("/v1/signals", content=big, headers=JSON)
    assert reply.status_code == 413 and "256 KiB" in reply.json()["detail"]

    def chunks():  # no content-length: the limit is counted as the body arrives
        yield b'{"items": ['
        for _ in range(40):
            yield b" " * 8192
        yield b"]}"

    reply = client.post(
        "/v1/signals", content=chunks(), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413


# --------------------------------------------------------------------------- decide
def test_decide_journals_once_and_refuses_a_second_decide(app, world):
    client, _ = app
    before = journal_size(world)
    body = {"date": day(world, -3), "account": "paper-a", "mode": "signal"}
    dry = client.post("/v1/decide", json={**body, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["journaled"] == 0 and journal_size(world) == before
    reply = client.post("/v1/decide", json=body)
    assert reply.status_code == 200, reply.text
    done = reply.json()
    assert done["journaled"] == len(done["decisions"]) == len(TICKERS_ON_A_REVIEW_DAY)
    rows = read_journal(Store(world.store_path), account="paper-a")
    assert sorted(rows["id"]) == sorted(d["id"] for d in done["decisions"])
    again = client.post("/v1/decide", json=body)
    assert again.status_code == 409 and "already decided" in again.json()["detail"]
    assert len(read_journal(Store(world.store_path), account="paper-a")) == len(rows)
    # the account's book, as its journal replays
    book = client.get("/v1/book/paper-a")
    assert book.status_code == 200, book.text
    assert book.json()["date"] == day(world, -3) and book.json()["portfolio"]["equity"] > 0
    assert client.get("/v1/book/nobody").status_code == 404


TICKERS_ON_A_REVIEW_DAY = [f"T{i}" for i in range(6)]


def test_decide_on_a_given_book(app, world):
    client, _ = app
    held = [{"ticker": "T0", "shares": 100, "cost_basis": 50.0, "entry_date": "2021-01-04"}]
    body = {"date": day(world, -2), "account": "desk", "book": {"cash": 50_000, "positions": held},
            "mode": "signal"}  # fmt: skip
    reply = client.post("/v1/decide", json=body)
    assert reply.status_code == 200, reply.text
    rows = read_journal(Store(world.store_path), account="desk")
    assert len(rows) == reply.json()["journaled"] > 0
    state = json.loads(rows["context"].iloc[0])["portfolio"]
    assert [p["ticker"] for p in state["positions"]] == ["T0"]


@pytest.mark.parametrize(
    ("change", "status", "named"),
    [
        ({"book": {"cash": 1, "positions": [{"ticker": "ZZZ", "shares": 1, "cost_basis": 1,
                                             "entry_date": "2021-01-04"}]}}, 400, "ZZZ"),
        ({"book": {"cash": -5}}, 422, "cash"),
        ({"book": {"cash": 1, "positions": [{"ticker": "T0", "shares": 0, "cost_basis": 1,
                                             "entry_date": "2021-01-04"}]}}, 422, "shares"),
        ({"book": {"cash": 1, "positions": [{"ticker": "T0", "shares": 1, "cost_basis": 1,
                                             "entry_date": "2021-01-04"}] * 2}}, 400, "twice"),
        ({"book": "cash"}, 422, "book"),
        ({"date": "2040-01-05"}, 404, "outside the store"),
        ({"date": "2021-09-25"}, 404, "no prices on"),
        ({"account": "bad name/../x"}, 422, "account"),
        ({"mode": "chatty"}, 422, "mode"),
    ],
)  # fmt: skip
def test_bad_decide_requests_get_a_4xx_and_journal_nothing(app, world, change, status, named):
    client, _ = app
    before = journal_size(world)
    body = {"date": day(world, -4), "account": "bad-requests", "mode": "signal", **change}
    reply = client.post("/v1/decide", json=body)
    assert reply.status_code == status, reply.text
    assert named in reply.text and "Traceback" not in reply.text
    assert journal_size(world) == before


def test_a_date_the_model_trained_on_is_refused_unless_allowed(app, world):
    client, _ = app
    early = str((pd.Timestamp(world.test_start) - pd.offsets.Week(weekday=4) * 8).date())
    reply = client.post("/v1/decide", json={"date": early, "account": "early", "dry_run": True,
                                            "mode": "signal"})  # fmt: skip
    assert reply.status_code == 409 and world.test_start in reply.json()["detail"]


def test_concurrent_decides_leave_the_journal_consistent(app, world):
    client, _ = app
    date = day(world, -5)

    def post(account: str):
        return client.post("/v1/decide", json={"date": date, "account": account, "mode": "signal"})

    with ThreadPoolExecutor(8) as pool:  # one account, many clients: one wins
        same = list(pool.map(post, ["race"] * 6))
    codes = sorted(r.status_code for r in same)
    assert codes == [200] + [409] * 5, [r.text for r in same]
    winner = next(r.json() for r in same if r.status_code == 200)
    rows = read_journal(Store(world.store_path), account="race")
    assert sorted(rows["id"]) == sorted(d["id"] for d in winner["decisions"])
    with ThreadPoolExecutor(8) as pool:  # many accounts at once: every one journaled whole
        each = list(pool.map(post, [f"acct-{i}" for i in range(5)]))
    assert all(r.status_code == 200 for r in each), [r.text for r in each]
    journal = read_journal(Store(world.store_path))
    assert journal["id"].is_unique
    for i, reply in enumerate(each):
        mine = journal[journal["account"] == f"acct-{i}"]
        assert sorted(mine["id"]) == sorted(d["id"] for d in reply.json()["decisions"])


# --------------------------------------------------------------------------- reading
def test_journal_filters_and_pages(app, world):
    client, _ = app
    client.post("/v1/decide", json={"date": day(world, -6), "account": "pages", "mode": "signal"})
    everything = client.get("/v1/journal", params={"account": "pages", "limit": 1000}).json()
    assert everything["total"] == len(everything["entries"]) > 2
    first = client.get("/v1/journal", params={"account": "pages", "limit": 2}).json()
    second = client.get("/v1/journal", params={"account": "pages", "limit": 2, "offset": 2}).json()
    ids = [e["id"] for e in first["entries"] + second["entries"]]
    assert ids == [e["id"] for e in everything["entries"][:4]]
    one = client.get("/v1/journal", params={"account": "pages", "ticker": "T2"}).json()
    assert {e["ticker"] for e in one["entries"]} == {"T2"}
    decision = everything["entries"][0]["signal"]["decision"]
    only = client.get("/v1/journal", params={"account": "pages", "decision": decision}).json()
    assert {e["signal"]["decision"] for e in only["entries"]} == {decision}
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"ticker": "bad ticker"},
                {"decision": "HOLD"}, {"start": "yesterday"}):  # fmt: skip
        assert client.get("/v1/journal", params=bad).status_code == 422, bad


def test_runs_list_and_detail(app, world):
    client, _ = app
    listed = {r["id"]: r["kind"] for r in client.get("/v1/runs").json()}
    assert listed == {"cmp": "compare", "cmp/always_buy": "run", "cmp/equal_weight": "run"}
    table = client.get("/v1/runs/cmp").json()
    assert {r["strategy"] for r in table["comparison"]} == {"always_buy", "equal_weight"}
    run = client.get("/v1/runs/cmp/always_buy").json()
    assert run["metrics"]["strategy"] == "always_buy"
    assert {"date", "equity", "benchmark", "drawdown"} <= set(run["equity"][0])
    assert max(p["drawdown"] for p in run["equity"]) == 0.0
    for missing in ("nope", "../serve", "cmp/../../etc", "%2e%2e/x"):
        reply = client.get(f"/v1/runs/{missing}")
        assert reply.status_code == 404, (missing, reply.text)


def test_the_api_console_works_offline(app):
    client, _ = app
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/static/swagger/{asset}" in page.text
        assert client.get(f"/static/swagger/{asset}").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/signals", "/v1/decide", "/v1/journal", "/v1/runs", "/v1/health"} <= set(
        spec["paths"]
    )
    assert client.get("/redoc").status_code == 404  # redoc would load its script from a CDN


def test_health_says_what_is_served(app, world):
    client, service = app
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["model"] == service.source
    assert health["prices_to"] == "2021-09-30"


# --------------------------------------------------------------------------- dashboard
def test_the_dashboard_wants_a_login_and_shows_every_section(app, world):
    client, _ = app
    decided = client.post("/v1/decide", json={"date": day(world), "account": "dash"})
    assert decided.status_code == 200, decided.text
    browser = TestClient(client.app)
    assert browser.get("/", follow_redirects=False).headers["location"] == "/login"
    failed = browser.post("/login", content=b"token=wrong", follow_redirects=True)
    assert "not valid" in failed.text
    browser.post("/login", content=f"token={world.token}".encode(), follow_redirects=False)
    page = browser.get("/")
    assert page.status_code == 200
    for part in ("id=decisions", "id=book", 'id="equity"', "id=comparison", "Calibration"):
        assert part in page.text, part
    assert "cdn" not in page.text.lower() and "/static/plotly.min.js" in page.text
    js = browser.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    every = pd.read_html(io.StringIO(page.text), attrs={"id": "decisions"})[0]
    # a decision and a ticker the tiny model wrote, filtered among the others
    decision, ticker = every.iloc[-1][["decision", "ticker"]]
    filtered = browser.get("/", params={"decision": decision, "ticker": ticker})
    assert "id=decisions" in filtered.text
    rows = pd.read_html(io.StringIO(filtered.text), attrs={"id": "decisions"})[0]
    assert set(rows["ticker"]) == {ticker} and set(rows["decision"]) == {decision}
    assert every["ticker"].nunique() > 1 and len(rows) < len(every)
    table = pd.read_html(io.StringIO(page.text), attrs={"id": "comparison"})[0]
    assert table["sharpe"].dtype == float  # numbers, formatted


def test_model_text_is_escaped_on_the_page(app, world, monkeypatch):
    client, service = app
    browser = TestClient(client.app, cookies={"synthpm_token": world.token})
    evil = '<script>alert("x")</script>'
    rows = read_journal(Store(world.store_path)).head(1)
    rows["reason"] = evil
    monkeypatch.setattr(service, "journal", lambda *a, **k: (1, rows))
    page = browser.get("/").text
    assert evil not in page and "&lt;script&gt;" in page


# --------------------------------------------------------------------------- batcher
def test_the_batcher_serves_concurrent_requests_in_shared_passes():
    calls = []

    def decode(prompts, mode):
        calls.append((len(prompts), mode))
        time.sleep(0.01)
        return [Signal(decision="SKIP", conviction=p[0] / 100, hold_duration_days=1,
                       reasoning=mode) for p in prompts]  # fmt: skip

    batcher = MicroBatcher(decode, max_batch=64, max_wait_ms=20)
    jobs = [([[i], [i + 50]], "signal" if i % 3 else "full") for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda job: batcher(*job), jobs))
    for (prompts, mode), got in zip(jobs, results, strict=True):
        assert [s.conviction * 100 for s in got] == pytest.approx([p[0] for p in prompts])
        assert {s.reasoning for s in got} == {mode}
    assert batcher.stats.prompts == 48 and len(calls) < 24
    assert batcher.stats.largest > 2
    batcher.close()


def test_the_batcher_refuses_when_full_and_passes_errors_on():
    release = threading.Event()

    def decode(prompts, mode):
        release.wait(5)
        if mode == "full":
            raise RuntimeError("decoder failed")
        return [Signal(decision="SKIP", conviction=0.5, hold_duration_days=1, reasoning="")
                for _ in prompts]  # fmt: skip

    batcher = MicroBatcher(decode, max_batch=1, max_wait_ms=0, max_queue=2)
    first = batcher.submit([[1]], "full")  # taken by the worker, which waits
    time.sleep(0.05)
    queued = [batcher.submit([[2]], "signal"), batcher.submit([[3]], "signal")]
    with pytest.raises(Busy, match="retry"):
        batcher.submit([[4]], "signal")
    release.set()
    with pytest.raises(RuntimeError, match="decoder failed"):
        first.result(5)
    assert all(len(f.result(5)) == 1 for f in queued)
    assert batcher.submit([], "signal").result(1) == []
    batcher.close()


# --------------------------------------------------------------------------- cli
def test_token_commands(world, tmp_path):
    from typer.testing import CliRunner

    from synthpm.cli import app as cli

    store = ["--store", str(world.store_path)]
    made = CliRunner().invoke(cli, ["serve", "token", "create", "cli-made", *store])
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    assert tokens.TokenCheck(Store(world.store_path)).valid(token)
    listed = CliRunner().invoke(cli, ["serve", "token", "list", *store])
    assert "cli-made" in listed.output and token not in listed.output
    assert CliRunner().invoke(cli, ["serve", "token", "revoke", "cli-made", *store]).exit_code == 0
    assert not tokens.TokenCheck(Store(world.store_path)).valid(token)
    bad = CliRunner().invoke(cli, ["serve", "token", "create", "no spaces", *store])
    assert bad.exit_code != 0


def test_serve_names_a_missing_store_or_model(world, tmp_path):
    from typer.testing import CliRunner

    from synthpm.cli import app as cli

    missing = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "none.duckdb")])
    assert "no store at" in str(missing.exception)
    no_model = ["serve", "--store", str(world.store_path), "--model", str(tmp_path / "none")]
    assert "no trained model" in str(CliRunner().invoke(cli, no_model).exception)
