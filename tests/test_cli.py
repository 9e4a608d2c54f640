"""The ``tierflow`` command as a user runs it: real model, JSON output, and clear errors for bad input.

Runs start on the ``tiny`` tier (tests/conftest.py sets TIERFLOW_DEFAULT_TIER, which the subprocess inherits);
the router may still escalate a call whose JSON fails its schema to the stronger ``mobile`` tier.
"""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.model
RUN_KEYS = {"answer", "intent", "plan", "pattern", "model_calls", "run_id", "elapsed_s", "status", "errors",
            "results"}
CALL_KEYS = {"tier", "model", "latency_ms", "input_tokens", "output_tokens"}


def tierflow(*args: str, home: Path, env: dict[str, str] | None = None, timeout: int = 300):
    """Run the installed console script in the repo root with its own data folder."""
    full_env = {**os.environ, "TIERFLOW_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("TIERFLOW_CONFIG", None)
    exe = Path(sys.executable).with_name("tierflow")
    return subprocess.run([str(exe), *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def started_on_tiny(calls: list[dict]) -> bool:
    """Every call ran on tiny, or was escalated (or fell back) from tiny to a stronger tier, and says so."""
    return all(c["tier"] == "tiny" or (c["fallback_from"] == "tiny" and c["rule"] in ("escalate", "fallback"))
               for c in calls)


def test_run_json_has_the_documented_keys_and_accounts_every_model_call(tmp_path):
    proc = tierflow("run", "--json", "What is 17 times 23?", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert RUN_KEYS <= set(out)
    assert out["intent"]["label"] == "calculate" and out["status"] == "done" and out["errors"] == []
    # calculate has a single-step template: no planner call, and its one result is the answer (no synthesizer)
    assert out["pattern"] == "sequential" and out["plan"]["source"] == "template"
    assert "single-step template: no planner call" in out["plan"]["notes"]
    [result] = out["results"]
    assert result["subtask_id"] == "compute" and result["output"] == out["answer"]
    assert "391" in out["answer"]  # the worker's answer must state the calculator's result
    assert out["model_calls"] and all(set(c) >= CALL_KEYS for c in out["model_calls"])
    assert out["model_calls"][0]["tier"] == "tiny" and started_on_tiny(out["model_calls"])
    assert all(c["input_tokens"] > 0 for c in out["model_calls"])
    # one accepted model call per worker step, nothing else; a reply the cascade turned down is a call of its own
    # (it cost tokens), and the call that replaced it says which check sent it up
    accepted = [c for c in out["model_calls"] if c["rule"] != "rejected"]
    assert len(accepted) == result["steps"]
    for rejected, after in itertools.pairwise(out["model_calls"]):
        if rejected["rule"] == "rejected":
            assert after["rule"] in ("rejected", "escalate")
            if after["rule"] == "escalate":
                assert after["check"] == rejected["check"] and after["fallback_from"] == rejected["tier"]
    assert (tmp_path / "checkpoints.sqlite").is_file()


def test_run_prints_the_answer_and_a_summary(tmp_path):
    proc = tierflow("run", "Write a two line poem about the sea.", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed, _, table = proc.stdout.rpartition("\n\nintent ")  # the answer, a blank line, then the summary
    rows = {label: value.strip() for label, _, value in (line.partition("  ") for line in
                                                          ("intent " + table).splitlines())}
    assert list(rows) == ["intent", "plan", "pattern", "model calls", "status", "run id", "wall time"]
    # the summary describes this run: the run id is the checkpointed run, and its answer is what was printed
    stored = json.loads(tierflow("resume", rows["run id"], "--json", home=tmp_path).stdout)
    assert stored["already_finished"] and stored["run_id"] == rows["run id"]
    assert stored["answer"].strip() and " ".join(printed.split()) == " ".join(stored["answer"].split())
    intent, plan = stored["intent"], stored["plan"]
    assert intent["label"] == "write" and rows["intent"] == f"{intent['label']} ({intent['confidence']:.2f})"
    assert rows["plan"] == "template — draft:writer" and plan["source"] == "template"
    assert (rows["pattern"], rows["status"]) == (stored["pattern"], stored["status"]) == ("sequential", "done")
    # one model call (the writer's; a single-step template needs no planner or synthesizer), on the tiny tier
    assert rows["model calls"].startswith("tiny(") and rows["model calls"].count(" tok, ") == 1
    assert rows["wall time"].endswith(" s") and float(rows["wall time"].removesuffix(" s")) > 0


def test_a_user_graph_runs_from_a_module_path(tmp_path):
    proc = tierflow("run", "--json", "--graph", "tierflow.examples.direct_answer:build_graph", "Say hi.", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] and out["plan"] is None and [c["tier"] for c in out["model_calls"]] == ["tiny"]


def test_run_on_the_cloud_tier_over_http(tmp_path, cloud_server):
    config = tmp_path / "tierflow.toml"
    config.write_text(f'[tiers.cloud]\nkind = "openai"\nbase_url = "{cloud_server}"\nmodel = "smollm2"\n'
                      'json_mode = "json_object"\nmax_retries = 0\n')
    proc = tierflow("run", "--json", "--config", str(config), "--tier", "cloud", "Plan a picnic.", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {c["tier"] for c in json.loads(proc.stdout)["model_calls"]} == {"cloud"}


@pytest.mark.parametrize(("args", "message"), [
    (["run", ""], "request is empty"),
    (["run", "   "], "request is empty"),
    (["run", "x" * 20_001], "the limit is 20000"),
    (["run", "explain " + "the history of the world " * 400], "does not fit tier 'tiny'"),
    (["run", "--tier", "gpu", "hello"], "default_tier names unknown tier 'gpu'"),
    (["run", "--graph", "no_such_pkg.mod:build", "hello"], "cannot import 'no_such_pkg.mod'"),
    (["run", "--graph", "tierflow.examples.direct_answer", "hello"], "must look like package.module:function"),
    (["run", "--graph", "tierflow.examples.direct_answer:nope", "hello"], "has no attribute 'nope'"),
    (["run", "--pattern", "swarm", "hello"], "pattern 'swarm' is not available"),
])
def test_bad_input_is_one_clear_error_and_a_non_zero_exit(tmp_path, args, message):
    proc = tierflow(*args, home=tmp_path)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_failed_run_exits_1_and_says_why(tmp_path):
    # a one-token budget: the first model call spends it, the next one ends the run
    config = tmp_path / "tierflow.toml"
    config.write_text('[routing.budget]\nmax_tokens = 1\non_exceed = "raise"\n')
    proc = tierflow("run", "--config", str(config), "Plan a picnic for four people.", home=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert "The run failed; no answer." in proc.stdout and "failed" in proc.stdout
    assert "reasons:" in proc.stderr and "BudgetExceeded" in proc.stderr

    proc = tierflow("run", "--json", "--config", str(config), "Plan a picnic for four people.", home=tmp_path)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["status"] == "failed" and out["answer"] == ""
    assert any(e.startswith("BudgetExceeded") for e in out["errors"]), out["errors"]


def test_a_malformed_settings_file_is_reported_with_its_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("default_tier = [")
    proc = tierflow("run", "--config", str(bad), "hello", home=tmp_path)
    assert proc.returncode == 2 and "is not valid TOML" in proc.stderr and "Traceback" not in proc.stderr


def test_doctor_reports_each_component_truthfully(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = tmp_path / "tierflow.toml"
    config.write_text(f'[tiers.cloud]\nkind = "openai"\nbase_url = "{dead}"\nmodel = "m"\n'
                      f'[mcp_servers.calc]\ncommand = "{sys.executable}"\n'
                      'args = ["-m", "tierflow.mcp_servers.calculator"]\n'
                      f'cwd = "{REPO}"\n[mcp_servers.broken]\ncommand = "{tmp_path / "no-such-server"}"\n'
                      'connect_timeout_s = 10\n')
    proc = tierflow("doctor", "--json", "--config", str(config), home=tmp_path)
    report = json.loads(proc.stdout)
    checks = {c.get("tier") or c["component"]: c for c in report["checks"] if c["component"] != "mcp"}
    servers = {c["name"]: c for c in report["checks"] if c["component"] == "mcp"}
    # the three default in-process tiers load, each from its shipped model
    for tier, model in [("tiny", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                        ("mobile", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
                        ("edge", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")]:
        assert checks[tier]["usable"] and "llama.cpp" in checks[tier]["detail"], checks[tier]
        assert Path(checks[tier]["model"]).name == model
    assert not checks["cloud"]["usable"] and dead in checks["cloud"]["detail"]
    assert checks["intents"]["usable"] and checks["data"]["usable"]
    assert checks["memory"]["usable"] and checks["memory"]["name"] == "embedded"
    assert servers["calc"]["usable"] and "calculate" in servers["calc"]["detail"]
    assert not servers["broken"]["usable"] and "no-such-server" in servers["broken"]["detail"]
    assert report["ok"] is False and proc.returncode == 1  # `run` would refuse to start with these

    proc = tierflow("doctor", "--json", home=tmp_path)  # the offline defaults alone
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True


def test_a_private_run_stays_on_the_device_even_when_cloud_is_asked_for(tmp_path, cloud_server):
    config = tmp_path / "tierflow.toml"
    config.write_text(f'[tiers.cloud]\nkind = "openai"\nbase_url = "{cloud_server}"\nmodel = "smollm2"\n'
                      'json_mode = "json_object"\nmax_retries = 0\n')
    proc = tierflow("run", "--json", "--config", str(config), "--tier", "cloud", "--private", "Plan my week.",
                    home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = json.loads(proc.stdout)["model_calls"]
    assert calls and calls[0]["tier"] == "tiny" and calls[0]["rule"] == "privacy"
    assert all(c["tier"] != "cloud" for c in calls)  # an escalation, if any, goes to another device tier


def test_an_unreachable_tier_fails_at_start_not_mid_run(tmp_path):
    config = tmp_path / "tierflow.toml"
    config.write_text(f'[tiers.cloud]\nkind = "openai"\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n'
                      'model = "m"\n')
    # the run starts on the cloud tier, so it is checked before anything runs
    proc = tierflow("run", "--json", "--config", str(config), "--tier", "cloud", "hello", home=tmp_path)
    # a server that is down is not bad input: exit 1, like a memory server that is down
    assert proc.returncode == 1 and "tier 'cloud' is unavailable" in proc.stderr and "tierflow doctor" in proc.stderr
    assert not (tmp_path / "checkpoints.sqlite").exists()  # nothing ran


def test_a_request_from_standard_input_and_the_resume_of_a_finished_run(tmp_path):
    # an out-of-scope request: answered without a model call, so this runs in seconds
    proc = subprocess.run([str(Path(sys.executable).with_name("tierflow")), "run", "--run-id", "trip-1", "-"],
                          input="book me a flight to Paris tomorrow\n", cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TIERFLOW_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "outside what this assistant handles" in proc.stdout
    again = tierflow("resume", "trip-1", home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "run trip-1 had finished already (done); nothing was run again" in again.stderr
    assert "outside what this assistant handles" in again.stdout
    as_json = json.loads(tierflow("resume", "trip-1", "--json", home=tmp_path).stdout)
    assert as_json["already_finished"] is True and as_json["model_calls"] == []
