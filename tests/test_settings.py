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
