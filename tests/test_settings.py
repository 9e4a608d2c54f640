"""Settings: defaults, a TOML file, environment overrides, and clear errors for bad files."""

from pathlib import Path

import pytest

from tierflow.app import agent_routers, build_router
from tierflow.runtimes.router import CallInfo
from tierflow.settings import AGENT_KINDS, SettingsError, load_settings, tier_overrides


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tierflow.toml"
    path.write_text(text)
    return path


def test_defaults_run_offline_on_the_mobile_tier(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERFLOW_DEFAULT_TIER", raising=False)  # tests/conftest.py sets it to tiny
    settings = load_settings()
    assert settings.default_tier == "mobile" and settings.tier_for("planner") == "mobile"
    assert sorted(settings.tiers) == ["edge", "mobile", "tiny"]
    assert {name: (tier.kind, tier.shipped) for name, tier in settings.tiers.items()} == {
        "tiny": ("llamacpp", "smollm2-135m"), "mobile": ("llamacpp", "qwen2.5-coder-0.5b"),
        "edge": ("llamacpp", "qwen2.5-coder-1.5b")}
    # escalation goes tiny -> mobile -> edge
    assert [t.strength for t in (settings.tiers["tiny"], settings.tiers["mobile"], settings.tiers["edge"])] == [0, 1, 2]


def test_the_environment_picks_the_default_tier(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERFLOW_DEFAULT_TIER", "tiny")
    settings = load_settings()
    assert settings.default_tier == "tiny" and settings.tier_for("worker") == "tiny"


def test_a_toml_file_declares_tiers_and_keeps_the_default_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("TIERFLOW_DEFAULT_TIER", raising=False)  # the environment would override the file
    path = write(tmp_path, """
default_tier = "cloud"
[agent_tiers]
planner = "mobile"
[tiers.cloud]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "qwen"
api_key = "sk-test"
""")
    settings = load_settings(path)
    assert sorted(settings.tiers) == ["cloud", "edge", "mobile", "tiny"]
    assert settings.tier_for("planner") == "mobile" and settings.tier_for("worker") == "cloud"
    assert settings.tiers["cloud"].api_key.get_secret_value() == "sk-test"
    assert "sk-test" not in repr(settings)


def test_environment_variables_override_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, 'worker_max_steps = 2\n')
    monkeypatch.setenv("TIERFLOW_WORKER_MAX_STEPS", "7")
    monkeypatch.setenv("TIERFLOW_TIERS__MOBILE__N_THREADS", "2")
    settings = load_settings(path)
    assert settings.worker_max_steps == 7 and settings.tiers["mobile"].n_threads == 2


@pytest.mark.parametrize(("text", "message"), [
    ("default_tier = ", "is not valid TOML"),
    ('default_tier = "gpu"', "default_tier names unknown tier 'gpu'"),
    ('[tiers.cloud]\nkind = "openai"\nmodel = "x"', "needs base_url"),
    ('colour = "blue"', "colour: Extra inputs are not permitted"),
    ("worker_max_steps = 0", "worker_max_steps: Input should be greater than or equal to 1"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, monkeypatch, text, message):
    monkeypatch.delenv("TIERFLOW_DEFAULT_TIER", raising=False)  # the environment would override the file
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_missing_settings_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


TIER_SETUPS = {
    "defaults": {},
    "routing order": {"routing": {"order": ["edge", "tiny"]}},
    "an agent's own tier": {"routing": {"order": ["edge"]}, "agent_tiers": {"planner": "tiny"}},
    "--tier": tier_overrides("edge"),
    "a public cloud first": {"default_tier": "cloud", "agent_tiers": {"worker": "cloud"},
                             "tiers": {"cloud": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}}},
}


@pytest.mark.parametrize("private", [False, True])
@pytest.mark.parametrize("setup", list(TIER_SETUPS))
def test_settings_and_the_router_agree_on_the_tier_of_every_agent_kind(tmp_path, monkeypatch, setup, private):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(**TIER_SETUPS[setup])
    routers = agent_routers(settings, build_router(settings))
    for kind in AGENT_KINDS:
        info = CallInfo(private=private, needs_json=False, needs_tools=False, prompt_chars=0, run_id=None, agent=kind)
        allowed, _ = routers[kind].candidates(info, lambda name: 0, None)
        assert settings.tier_for(kind, private=private) == allowed[0][0], (setup, kind)
    assert settings.run_tiers(private=private) == {settings.tier_for(kind, private=private) for kind in AGENT_KINDS}


# --- Settings built in code, round-tripped through TOML, shown with secrets masked -------------------------------

SECRETS = {"token": "tok-SECRET-1", "password": "pw-SECRET-2", "api_key": "sk-SECRET-3", "auth": "Bearer SECRET-4",
           "env": "env-SECRET-5", "url": "url-SECRET-6", "arg": "arg-SECRET-7"}


def custom_settings(tmp_path: Path):
    from tierflow.runtimes.config import TierConfig
    from tierflow.settings import Settings

    return Settings(
        home=tmp_path / "home", default_tier="tiny", agent_tiers={"planner": "cloud"}, worker_max_steps=3,
        tiers={"cloud": TierConfig(kind="openai", base_url="http://127.0.0.1:9/v1", model="m",
                                   api_key=SECRETS["api_key"]), "tiny": {"n_threads": 1, "max_tokens": 128}},
        mcp_servers={"calc": {"command": "python", "args": ["-m", "calc", "--token", SECRETS["arg"]],
                              "env": {"CALC_API_KEY": SECRETS["env"]}},
                     "remote": {"transport": "http", "url": "http://127.0.0.1:9/mcp", "token": SECRETS["token"],
                                "headers": {"Authorization": SECRETS["auth"], "X-Trace": "on"}}},
        memory={"neo4j_user": "neo", "neo4j_password": SECRETS["password"], "recall_k": 2},
        checkpointer=f"postgres://tierflow:{SECRETS['url']}@127.0.0.1:5432/runs",
        routing={"order": ["tiny", "mobile"], "budget": {"max_tokens": 1000, "on_exceed": "degrade"}},
        tracing={"secret_key": "sk-lf-SECRET", "public_key": "pk-lf-public", "flush_timeout_s": 2})


def test_settings_built_in_code_round_trip_through_toml(tmp_path):
    import tomllib

    from tierflow.settings import Settings

    settings = custom_settings(tmp_path)
    assert settings.tiers["tiny"].max_tokens == 128 and settings.tiers["tiny"].kind == "llamacpp"  # merged
    assert settings.tier_for("planner") == "cloud" and settings.tier_for("worker") == "tiny"
    text = settings.to_toml()
    assert tomllib.loads(text)["mcp_servers"]["remote"]["headers"]["X-Trace"] == "on"
    again = Settings.from_toml(text)
    assert again.model_dump() == settings.model_dump() and again.to_toml() == text
    path = tmp_path / "tierflow.toml"
    path.write_text(text)
    assert load_settings(path).model_dump() == settings.model_dump() == Settings.from_toml(path).model_dump()


def test_toml_text_ranks_like_a_settings_file_under_the_environment(monkeypatch):
    from tierflow.settings import Settings

    monkeypatch.setenv("TIERFLOW_WORKER_MAX_STEPS", "9")
    settings = Settings.from_toml('worker_max_steps = 2\nmax_subtasks = 3\n')
    assert (settings.worker_max_steps, settings.max_subtasks) == (9, 3)
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.from_toml("worker_max_steps = ")


@pytest.mark.parametrize(("fields", "messages"), [
    ({"max_subtasks": 0}, ["max_subtasks: Input should be greater than or equal to 1 (got 0)"]),
    ({"tiers": {"gpu": {"kind": "cuda"}}}, ["tiers.gpu.kind: Input should be 'llamacpp', 'torch' or 'openai' "
                                            "(got 'cuda')"]),
    ({"default_tier": "gpu"}, ["default_tier names unknown tier 'gpu'; declared tiers: edge, mobile, tiny"]),
    ({"colour": "blue", "worker_max_steps": "many"}, ["colour: Extra inputs are not permitted",
                                                      "worker_max_steps: Input should be a valid integer"]),
    ({"mcp_servers": {"calc": {"transport": "stdio"}}}, ["mcp_servers.calc: a stdio MCP server needs 'command'"]),
])
def test_settings_built_in_code_are_validated_with_every_problem_named(fields, messages):
    from tierflow.settings import Settings

    with pytest.raises(SettingsError) as info:
        Settings(**fields)
    assert str(info.value).startswith("settings are invalid: ")
    for message in messages:
        assert message in str(info.value)


def test_masked_toml_hides_every_secret_and_still_parses(tmp_path):
    import tomllib

    masked = custom_settings(tmp_path).to_toml(mask_secrets=True)
    for secret in [*SECRETS.values(), "sk-lf-SECRET"]:
        assert secret not in masked
    data = tomllib.loads(masked)
    assert data["mcp_servers"]["remote"]["token"] == "***" and data["mcp_servers"]["calc"]["args"][-1] == "***"
    assert data["mcp_servers"]["remote"]["headers"] == {"Authorization": "***", "X-Trace": "on"}
    assert data["checkpointer"] == "postgres://tierflow:***@127.0.0.1:5432/runs"
    assert data["tracing"]["public_key"] == "pk-lf-public" and data["tiers"]["tiny"]["max_tokens"] == 128
    assert "secret_fields" in data["tracing"]["mask"]  # a setting named like a secret, not one


def test_config_show_prints_the_effective_settings_with_secrets_masked(tmp_path):
    import os
    import subprocess
    import sys
    import tomllib

    exe = Path(sys.executable).with_name("tierflow")
    path = write(tmp_path, f'worker_max_steps = 5\n[memory]\nneo4j_password = "{SECRETS["password"]}"\n'
                           f'[mcp_servers.remote]\ntransport = "http"\nurl = "http://127.0.0.1:9/mcp"\n'
                           f'token = "{SECRETS["token"]}"\n')
    env = {**os.environ, "TIERFLOW_HOME": str(tmp_path / "home"), "TIERFLOW_MAX_SUBTASKS": "4",
           "TIERFLOW_MEMORY__WEAVIATE_API_KEY": SECRETS["api_key"]}
    shown = subprocess.run([str(exe), "config", "show", "--config", str(path)], capture_output=True, text=True,
                           env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert not [s for s in SECRETS.values() if s in shown.stdout]
    data = tomllib.loads(shown.stdout)
    assert (data["worker_max_steps"], data["max_subtasks"], data["default_tier"]) == (5, 4, "tiny")  # file, env
    assert data["memory"]["neo4j_password"] == data["memory"]["weaviate_api_key"] == "***"
    assert data["home"] == str(tmp_path / "home") and "tiny" in data["tiers"]
    bad = subprocess.run([str(exe), "config", "show", "--config", str(write(tmp_path, "worker_max_steps = 0"))],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "worker_max_steps" in bad.stderr and str(tmp_path) in bad.stderr
