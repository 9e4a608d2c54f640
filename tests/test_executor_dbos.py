"""The DBOS executor on real PostgreSQL with real worker processes (and on SQLite in this process).

Every model call goes through the real router and cloud tier to a scripted model server on loopback
(tests/model_server.py, fixed latency), the only fake; the graph is the real orchestrator with a ``record`` tool
whose calls leave a line in a log (tests/dbos_graph.py). Workers are ``tierflow worker`` processes.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures_dbos import Workers, worker_env
from tests.model_server import ScriptedModelServer
from tests.paths import REPO

pytest.importorskip("dbos")

GRAPH = "tests.dbos_graph:durable_graph"
CALLS_PER_RUN = 6  # plan; a: tool call + finish; b; c; synthesis
TOKENS_PER_CALL = 15


def settings_toml(servers: dict[str, ScriptedModelServer], checkpointer: str, database_url: str,
                  limits: dict[str, str] | None = None) -> str:
    """A settings file: the scripted servers as ``openai`` tiers (first one the default), DBOS executor."""
    lines = [f'default_tier = "{next(iter(servers))}"', f'checkpointer = "{checkpointer}"',
             "[memory]", "enabled = false",
             "[executor]", 'kind = "dbos"', f'database_url = "{database_url}"', "poll_s = 0.1",
             "heartbeat_s = 0.5", "dead_after_s = 3"]
    for name, server in servers.items():
        lines += [f"[tiers.{name}]", 'kind = "openai"', f'base_url = "{server.base_url}"', 'model = "scripted"',
                  "timeout_s = 30", "max_retries = 0", *((limits or {}).get(name, "").splitlines())]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def cluster(dbos_postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three workers on one PostgreSQL database, three scripted servers: ``cloud``, ``capped`` and ``metered``."""
    from tierflow.graphs.dbos_executor import DbosClient
    from tierflow.settings import load_settings

    home = tmp_path_factory.mktemp("dbos-home")
    servers = {"cloud": ScriptedModelServer(200, home / "cloud.log"),
               "capped": ScriptedModelServer(200, home / "capped.log"),
               "metered": ScriptedModelServer(50, home / "metered.log")}
    for server in servers.values():
        server.__enter__()
    database = f"{dbos_postgres}/tf_{uuid.uuid4().hex[:8]}"
    config = home / "tierflow.toml"
    config.write_text(settings_toml(servers, f"{dbos_postgres}/postgres", database, {
        "capped": "max_concurrency = 2", "metered": "rate_limit = { calls = 4, period_s = 1.0 }"}))
    env = worker_env(home, TIERFLOW_TEST_TOOL_LOG=str(home / "tools.log"))
    workers = Workers(config, home, env)
    client = None
    try:
        workers.start("w1", "w2", "w3")
        settings = load_settings(config)
        client = DbosClient(settings.executor, settings.home)
        yield {"home": home, "servers": servers, "config": config, "env": env, "workers": workers,
               "client": client, "database": database}
    finally:
        if client is not None:
            client.close()
        workers.stop()
        for server in servers.values():
            server.__exit__(None, None, None)


def _submit(cluster: dict[str, Any], tags: list[str], tier: str | None = None, **spec: Any) -> list[str]:
    from tierflow.graphs.executor import RunSpec

    return [cluster["client"].submit(RunSpec(run_id=tag, request=f"job [{tag}]", graph=GRAPH, tier=tier, **spec))
            for tag in tags]


def _wait_all(cluster: dict[str, Any], ids: list[str], timeout_s: float = 120) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    try:
        return {i: cluster["client"].result(i, timeout_s=max(1.0, deadline - time.monotonic())) for i in ids}
    except TimeoutError:  # say where things stand
        rows = cluster["client"].client.list_workflows(load_input=False, load_output=False)
        workers = cluster["workers"]
        raise AssertionError(f"runs unfinished: {[(w.workflow_id, w.status, w.executor_id) for w in rows]}; "
                             f"workers: {cluster['client'].workers()}; logs: "
                             f"{ {w: workers.log(w)[-2000:] for w in workers.procs} }") from None


def _server_log(cluster: dict[str, Any], name: str) -> list[dict[str, Any]]:
    path = cluster["home"] / f"{name}.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _calls(cluster: dict[str, Any], run_id: str) -> list[Any]:
    """The call workflows the journal recorded for ``run_id``."""
    found = cluster["client"].client.list_workflows(workflow_id_prefix=f"{run_id}:", name="tierflow.call",
                                                    load_input=False)
    return [w for w in found if w.status == "SUCCESS"]


def _tool_notes(cluster: dict[str, Any]) -> collections.Counter[str]:
    path = cluster["home"] / "tools.log"
    return collections.Counter(json.loads(line)["note"] for line in path.read_text().splitlines()) \
        if path.exists() else collections.Counter()


@pytest.mark.postgres
@pytest.mark.server
def test_queued_runs_spread_over_workers_with_every_call_journaled_and_charged_once(cluster):
    tags = [f"q{i}" for i in range(6)]
    outputs = _wait_all(cluster, _submit(cluster, tags))
    assert {out["result"]["answer"] for out in outputs.values()} == {f"final answer for [{t}]" for t in tags}
    assert len({out["worker"] for out in outputs.values()}) >= 2  # the queue spread the runs
    for tag in tags:
        calls = _calls(cluster, tag)
        assert sum(":model:" in c.workflow_id for c in calls) == CALLS_PER_RUN
        assert sum(":tool:" in c.workflow_id for c in calls) == 1
        assert cluster["client"].usage(tag) == {"tokens": CALLS_PER_RUN * TOKENS_PER_CALL, "cost": 0.0,
                                                "charged_calls": CALLS_PER_RUN}
        assert _tool_notes(cluster)[f"record [{tag}] part a"] == 1
    # submitting a run id again is a no-op: the stored result comes back, no model is called
    before = cluster["servers"]["cloud"].stats()["requests"]
    again = _wait_all(cluster, _submit(cluster, tags[:2]))
    assert again == {t: outputs[t] for t in tags[:2]}
    assert cluster["servers"]["cloud"].stats()["requests"] == before
    rows = cluster["client"].runs(status="done")
    assert {r["run_id"] for r in rows} >= set(tags)


@pytest.mark.postgres
@pytest.mark.server
def test_tier_capacity_holds_across_workers(cluster):
    capped = cluster["servers"]["capped"]
    capped.reset()
    outputs = _wait_all(cluster, _submit(cluster, [f"cap{i}" for i in range(6)], tier="capped"))
    assert all(out["result"]["status"] == "done" for out in outputs.values())
    assert {c.tier for out in outputs.values() for c in _model_calls(out)} == {"capped"}
    # 6 runs x 2 parallel branches on 3 workers would put up to 12 calls in flight; the queue allows 2
    assert capped.stats()["max_in_flight"] == 2
    metered = _wait_all(cluster, _submit(cluster, [f"met{i}" for i in range(3)], tier="metered"))
    assert all(out["result"]["status"] == "done" for out in metered.values())
    # rate_limit = {calls = 4, period_s = 1}: no second saw more than 4 of the calls start (DBOS's clock) ...
    dequeued = sorted(w.dequeued_at for w in cluster["client"].client.list_workflows(
        queue_name="tierflow-tier-metered", load_input=False, load_output=False))
    assert len(dequeued) == 3 * CALLS_PER_RUN
    assert max(sum(1 for d in dequeued if t <= d < t + 1000) for t in dequeued) <= 4
    # ... and the server saw 18 calls spread over at least (18 - 4) / 4 seconds
    starts = sorted(entry["start"] for entry in _server_log(cluster, "metered"))
    assert len(starts) == 3 * CALLS_PER_RUN and starts[-1] - starts[0] >= (len(starts) - 4) / 4 - 0.25


def _model_calls(output: dict[str, Any]) -> list[Any]:
    from tierflow.graphs.runner import RunResult

    return RunResult.model_validate(output["result"]).model_calls


def _cli(cluster: dict[str, Any], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tierflow.cli", *args, "--config", str(cluster["config"])],
                          cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=timeout)


@pytest.mark.postgres
@pytest.mark.server
def test_a_waiting_run_is_answered_and_a_running_one_cancelled(cluster):
    client = cluster["client"]
    _submit(cluster, ["ask1"], confirm_plan=True)
    _wait_all(cluster, ["ask1"])
    shown = _cli(cluster, "status", "ask1", "--json")
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert row["status"] == "waiting" and row["interrupt"]["question"].startswith("Run this parallel plan?")
    answered = _cli(cluster, "resume", "ask1", "--answer", "yes", "--graph", GRAPH, "--json")
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["answer"] == "final answer for [ask1]"
    assert client.status("ask1")["status"] == "done" and client.status("ask1")["workflows"] == 2

    _submit(cluster, ["stop1"])
    deadline = time.monotonic() + 60
    while not any(e["tag"] == "stop1" for e in _server_log(cluster, "cloud")):  # its first call was answered
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.cancel("stop1") == "stop1"  # what `tierflow cancel stop1` does, without its start-up time
    time.sleep(1.5)  # long enough for the rest of the run, had it gone on
    made = sum(e["tag"] == "stop1" for e in _server_log(cluster, "cloud"))
    assert 1 <= made < CALLS_PER_RUN
    assert client.status("stop1")["status"] == "cancelled"
    again = _cli(cluster, "cancel", "stop1")  # the command itself: a run that has ended cannot be cancelled
    assert again.returncode == 2 and "has ended (cancelled)" in again.stderr


@pytest.mark.postgres
@pytest.mark.server
def test_an_eval_suite_runs_on_the_workers_and_a_rerun_resumes(cluster, tmp_path):
    out = tmp_path / "eval"
    first = _cli(cluster, "eval", "intents-small", "--executor", "dbos", "--limit", "12", "--out", str(out),
                 "--json", "--no-html", "--no-progress", timeout=300)
    assert first.returncode == 0, first.stderr
    (cell,) = json.loads(first.stdout)["cells"].values()
    assert cell["n"] == 12 and cell["errors"] == 0 and cell["metrics"]["accuracy"] == 1.0
    units = cluster["client"].client.list_workflows(name="tierflow.job", load_input=False, load_output=False)
    assert len(units) == 12 and {u.status for u in units} == {"SUCCESS"}
    assert len({u.executor_id for u in units}) >= 2  # the workers shared the units
    # a rerun with the results file gone attaches to the stored units: same report, nothing runs again
    (out / "results.jsonl").unlink()
    again = _cli(cluster, "eval", "intents-small", "--executor", "dbos", "--limit", "12", "--out", str(out),
                 "--json", "--no-html", "--no-progress", timeout=300)
    assert again.returncode == 0, again.stderr
    (rerun,) = json.loads(again.stdout)["cells"].values()
    assert rerun["metrics"] == cell["metrics"] and rerun["n"] == 12
    assert len(cluster["client"].client.list_workflows(name="tierflow.job", load_input=False,
                                                       load_output=False)) == 12


@pytest.mark.postgres
@pytest.mark.server
def test_a_killed_worker_loses_and_repeats_nothing(cluster):
    client, workers = cluster["client"], cluster["workers"]
    tags = [f"k{i}" for i in range(12)]
    ids = _submit(cluster, tags)
    deadline = time.monotonic() + 60
    while True:  # kill w1 while it holds runs with a call in flight
        taken = client.client.list_workflows(executor_id="w1", status="PENDING", name="tierflow.run",
                                             load_input=False, load_output=False)
        if taken and cluster["servers"]["cloud"].stats()["in_flight"]:
            break
        assert time.monotonic() < deadline, "w1 never took a run"
        time.sleep(0.02)
    killed_pid = workers.procs["w1"].pid
    workers.kill("w1")
    killed_at = time.time()
    victims = {w.workflow_id for w in taken}
    outputs = _wait_all(cluster, ids, timeout_s=120)

    # 0 lost: every run finished with its answer; w1's runs were finished by the others
    assert {t: o["result"]["answer"] for t, o in outputs.items()} == {t: f"final answer for [{t}]" for t in tags}
    assert {outputs[v]["worker"] for v in victims} <= {"w2", "w3"}
    assert {w["executor_id"]: w["state"] for w in client.workers()}["w1"] == "dead"
    tool_runs = collections.defaultdict(list)
    for line in (cluster["home"] / "tools.log").read_text().splitlines():
        entry = json.loads(line)
        tool_runs[entry["note"]].append(entry)
    log = [e for e in _server_log(cluster, "cloud") if e["tag"] in tags]
    for tag in tags:
        # 0 repeated: each run recorded exactly its calls, and its tool ran once, or again only because the first
        # time it ran on w1 just before the kill, which never got to record it (in flight: at-least-once)
        assert sum(":model:" in c.workflow_id for c in _calls(cluster, tag)) == CALLS_PER_RUN
        *earlier, _ = tool_runs[f"record [{tag}] part a"]
        assert all(e["pid"] == killed_pid and e["at"] <= killed_at for e in earlier) and len(earlier) <= 1
        # 0 double-charged: one charge per call, whatever was recovered or replayed
        assert client.usage(tag) == {"tokens": CALLS_PER_RUN * TOKENS_PER_CALL, "cost": 0.0,
                                     "charged_calls": CALLS_PER_RUN}
        assert outputs[tag]["usage"]["tokens"] == CALLS_PER_RUN * TOKENS_PER_CALL
    # a model call reached the server twice only when the first was in flight on w1 when it died
    seen: dict[str, dict[str, Any]] = {}
    repeated = []
    for entry in sorted(log, key=lambda e: e["start"]):
        if entry["digest"] in seen:
            repeated.append(seen[entry["digest"]])
        seen.setdefault(entry["digest"], entry)
    assert all(first["start"] <= killed_at for first in repeated)
    assert len(repeated) <= 4  # w1 ran at most 2 runs at once, each with at most 2 calls in flight
    assert len(log) == CALLS_PER_RUN * len(tags) + len(repeated)


@pytest.mark.server
def test_a_run_on_the_dbos_executor_in_this_process_on_sqlite(tmp_path):
    """One host, no worker: `tierflow run` with ``[executor] kind = "dbos"`` on the default SQLite database."""
    with ScriptedModelServer(20, tmp_path / "cloud.log") as server:
        config = tmp_path / "tierflow.toml"
        text = settings_toml({"cloud": server}, f"sqlite:///{tmp_path / 'cp.sqlite'}", "x")
        config.write_text(text.replace('database_url = "x"\n', ""))
        env = worker_env(tmp_path, TIERFLOW_TEST_TOOL_LOG=str(tmp_path / "tools.log"))
        run = subprocess.run([sys.executable, "-m", "tierflow.cli", "run", "job [one]", "--graph", GRAPH,
                              "--run-id", "one", "--json", "--config", str(config)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["answer"] == "final answer for [one]"
        assert (tmp_path / "dbos.sqlite").exists() and server.stats()["requests"] == CALLS_PER_RUN
        again = subprocess.run([sys.executable, "-m", "tierflow.cli", "resume", "one", "--graph", GRAPH, "--json",
                                "--config", str(config)], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=180)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["already_finished"] is True
        assert server.stats()["requests"] == CALLS_PER_RUN
        from tierflow.graphs.dbos_executor import DbosClient
        from tierflow.graphs.executor_config import ExecutorConfig

        client = DbosClient(ExecutorConfig(kind="dbos"), tmp_path)  # the default database: home/dbos.sqlite
        try:
            row = client.status("one")
        finally:
            client.close()
        assert row["status"] == "done" and row["usage"] == {"tokens": 90, "cost": 0.0, "charged_calls": 6}
    assert os.path.exists(tmp_path / "tools.log")


@pytest.mark.server
def test_one_workers_open_circuit_spares_the_others(tmp_path):
    """Two routers with separate state share circuits through the executor's table (SQLite here)."""
    from tierflow.graphs.dbos_executor import SharedCircuitTable, Store
    from tierflow.runtimes.config import TierConfig
    from tierflow.runtimes.registry import TierRegistry
    from tierflow.runtimes.router import RoutingPolicy, TierRouter

    store = Store(f"sqlite:///{tmp_path / 'dbos.sqlite'}")
    with ScriptedModelServer(10) as server:
        tiers = {"down": TierConfig(kind="openai", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=5,
                                    max_retries=0, strength=1),
                 "up": TierConfig(kind="openai", base_url=server.base_url, model="scripted", timeout_s=5,
                                  max_retries=0, strength=0)}
        policy = RoutingPolicy(order=["down", "up"], circuit_failures=2, circuit_cooldown_s=60)
        routers = [TierRouter(registry=TierRegistry(tiers, "down"), policy=policy) for _ in range(2)]
        for router in routers:
            router.shared_state.shared_circuits = SharedCircuitTable(store, refresh_s=0)
        first, second = routers
        for _ in range(2):  # the first worker finds "down" down twice: its circuit opens, for everyone
            reply = first.invoke("hello")
            assert reply.response_metadata["route"]["fallback_from"] == "down"
        reply = second.invoke("hello")  # the second never tries it
        route = reply.response_metadata["route"]
        assert route["tier"] == "up" and route["fallback_from"] is None
        assert route["skipped"]["down"] == "circuit open after failures (seen by another worker)"
        store.circuit_ok("down")  # a success anywhere closes it again
        assert SharedCircuitTable(store).opened_for("down") is None
    store.close()
