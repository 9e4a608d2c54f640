"""The ``tierflow`` command as a user runs it: real model, JSON output, and clear errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.model
RUN_KEYS = {"answer", "intent", "plan", "pattern", "model_calls", "run_id", "elapsed_s"}
CALL_KEYS = {"tier", "model", "latency_ms", "input_tokens", "output_tokens"}


def tierflow(*args: str, home: Path, env: dict[str, str] | None = None, timeout: int = 300):
    """Run the installed console script in the repo root with its own data folder."""
    full_env = {**os.environ, "TIERFLOW_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("TIERFLOW_CONFIG", None)
    exe = Path(sys.executable).with_name("tierflow")
    return subprocess.run([str(exe), *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_run_json_has_the_documented_keys_and_accounts_every_model_call(tmp_path):
    proc = tierflow("run", "--json", "What is 17 times 23?", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert RUN_KEYS <= set(out)
    assert out["intent"]["label"] == "calculate"
    assert out["pattern"] == "sequential" and out["plan"]["source"] in ("model", "repaired", "template")
    assert out["model_calls"] and all(set(c) >= CALL_KEYS for c in out["model_calls"])
    assert {c["tier"] for c in out["model_calls"]} == {"mobile"}
    assert all(c["input_tokens"] > 0 for c in out["model_calls"])
    # planner + at least one worker call per subtask + synthesizer
    assert len(out["model_calls"]) >= len(out["plan"]["subtasks"]) + 2
    assert (tmp_path / "checkpoints.sqlite").is_file()


def test_run_prints_the_answer_and_a_summary(tmp_path):
    proc = tierflow("run", "Write a two line poem about the sea.", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for label in ("intent", "plan", "pattern", "model calls", "run id", "wall time"):
        assert label in proc.stdout


def test_a_user_graph_runs_from_a_module_path(tmp_path):
    proc = tierflow("run", "--json", "--graph", "examples.direct_answer:build_graph", "Say hi.", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] and out["plan"] is None and [c["tier"] for c in out["model_calls"]] == ["mobile"]


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
    (["run", "explain " + "the history of the world " * 400], "does not fit tier 'mobile'"),
    (["run", "--tier", "gpu", "hello"], "default_tier names unknown tier 'gpu'"),
    (["run", "--graph", "no_such_pkg.mod:build", "hello"], "cannot import 'no_such_pkg.mod'"),
    (["run", "--graph", "examples.direct_answer", "hello"], "must look like package.module:function"),
    (["run", "--graph", "examples.direct_answer:nope", "hello"], "has no attribute 'nope'"),
    (["run", "--pattern", "swarm", "hello"], "pattern 'swarm' is not available"),
])
def test_bad_input_is_one_clear_error_and_a_non_zero_exit(tmp_path, args, message):
    proc = tierflow(*args, home=tmp_path)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_malformed_settings_file_is_reported_with_its_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("default_tier = [")
    proc = tierflow("run", "--config", str(bad), "hello", home=tmp_path)
    assert proc.returncode == 2 and "is not valid TOML" in proc.stderr and "Traceback" not in proc.stderr


def test_doctor_reports_each_component_truthfully(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = tmp_path / "tierflow.toml"
    config.write_text(f'[tiers.cloud]\nkind = "openai"\nbase_url = "{dead}"\nmodel = "m"\n'
                      f'[mcp_servers.calc]\ncommand = "{sys.executable}"\nargs = ["-m", "mcp_servers.calculator"]\n'
                      f'cwd = "{REPO}"\n[mcp_servers.broken]\ncommand = "{tmp_path / "no-such-server"}"\n'
                      'connect_timeout_s = 10\n')
    proc = tierflow("doctor", "--json", "--config", str(config), home=tmp_path)
    report = json.loads(proc.stdout)
    checks = {c.get("tier") or c["component"]: c for c in report["checks"] if c["component"] != "mcp"}
    servers = {c["name"]: c for c in report["checks"] if c["component"] == "mcp"}
    assert checks["mobile"]["usable"] and "llama.cpp" in checks["mobile"]["detail"]
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
    assert calls and {(c["tier"], c["rule"]) for c in calls} == {("mobile", "privacy")}


def test_an_unreachable_tier_fails_at_start_not_mid_run(tmp_path):
    config = tmp_path / "tierflow.toml"
    config.write_text(f'[tiers.cloud]\nkind = "openai"\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n'
                      'model = "m"\n')
    proc = tierflow("run", "--json", "--config", str(config), "hello", home=tmp_path)
    assert proc.returncode == 2 and "tier 'cloud' is unavailable" in proc.stderr and "tierflow doctor" in proc.stderr
    assert not (tmp_path / "checkpoints.sqlite").exists()  # nothing ran
