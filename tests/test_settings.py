"""Settings: defaults, a TOML file, environment overrides, and clear errors for bad files."""

from pathlib import Path

import pytest

from tierflow.settings import SettingsError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tierflow.toml"
    path.write_text(text)
    return path


def test_defaults_run_offline_on_the_mobile_tier(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.default_tier == "mobile" and settings.tiers["mobile"].kind == "llamacpp"
    assert settings.tier_for("planner") == "mobile"


def test_a_toml_file_declares_tiers_and_keeps_the_default_ones(tmp_path):
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
    assert sorted(settings.tiers) == ["cloud", "mobile"]
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
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_missing_settings_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
