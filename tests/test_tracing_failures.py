"""Tracing never hurts a run: off by default, bounded when the receiver is down or slow, clear config errors."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from tests.conftest import free_port
from tests.test_tracing_export import scripted_graph
from tierflow.cli import app
from tierflow.graphs.runner import run_request
from tierflow.settings import SettingsError, load_settings
from tierflow.tracing import TracingConfigError, open_tracing, resolve


def test_tracing_is_off_unless_configured():
    assert open_tracing({}, env={}) is None
    assert open_tracing(None, env={"LANGFUSE_HOST": "http://127.0.0.1:1"}) is None  # a URL alone is not consent
    assert not resolve({"public_key": "pk", "secret_key": "sk", "enabled": False}, env={}).active


def test_langfuse_env_variables_turn_it_on(otlp_receiver):
    config = resolve({}, env=otlp_receiver.env(LANGFUSE_SAMPLE_RATE="0.5", LANGFUSE_TRACING_ENVIRONMENT="ci"))
    assert config.langfuse and config.public_key == otlp_receiver.public_key
    assert (config.base_url, config.sample_rate, config.environment) == (otlp_receiver.base_url, 0.5, "ci")
    # settings win over the environment
    assert resolve({"base_url": "http://127.0.0.1:2"}, env=otlp_receiver.env()).base_url == "http://127.0.0.1:2"


@pytest.mark.parametrize(("settings", "env", "message"), [
    ({"public_key": "pk-only"}, {}, "secret_key (LANGFUSE_SECRET_KEY) is missing"),
    ({}, {"LANGFUSE_SECRET_KEY": "sk"}, "public_key (LANGFUSE_PUBLIC_KEY) is missing"),
    ({}, {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_BASE_URL": "localhost:3000"},
     "'localhost:3000' is not an http(s) URL"),
    ({}, {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_SAMPLE_RATE": "lots"},
     "could not convert string to float"),
    ({}, {"LANGFUSE_TRACING_ENABLED": "maybe"}, "LANGFUSE_TRACING_ENABLED='maybe' must be true or false"),
    ({"enabled": True}, {}, "neither Langfuse keys nor a trace_file"),
    ({"sample_rate": 3}, {}, "sample_rate: Input should be less than or equal to 1"),
    ({"mask": {"secret_patterns": ["(unclosed"]}}, {}, "'(unclosed' is not a valid regular expression"),
    ({"flush_timeout_s": 0}, {}, "flush_timeout_s"),
    ({"environment": "langfuse-prod"}, {}, "must be 1-40 of a-z 0-9"),
    ({"colour": "blue"}, {}, "colour: Extra inputs are not permitted"),
])
def test_malformed_config_is_a_typed_error_naming_the_field(settings, env, message):
    with pytest.raises(TracingConfigError, match="tracing") as caught:
        resolve(settings, env=env)
    assert message in str(caught.value)


def test_a_malformed_tracing_block_in_the_settings_file_names_file_and_field(tmp_path):
    path = tmp_path / "tierflow.toml"
    path.write_text('[tracing]\nbase_url = "not a url"\n')
    with pytest.raises(SettingsError, match=r"tierflow.toml.*tracing.base_url.*not an http\(s\) URL"):
        load_settings(path)


def test_the_cli_reports_malformed_tracing_env_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("TIERFLOW_CONFIG", raising=False)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-only")
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    result = CliRunner().invoke(app, ["run", "hello there"])
    assert result.exit_code == 2
    assert "LANGFUSE_SECRET_KEY" in result.output and "Traceback" not in result.output


def _timed_run(tmp_path, settings) -> tuple[float, bool, str]:
    tracing = open_tracing(settings, env={})
    started = time.monotonic()
    result = run_request(scripted_graph(tmp_path), "what is 17*23?", run_id="r", callbacks=[tracing.handler()])
    done = tracing.close()
    return time.monotonic() - started, done, result.answer


def test_a_receiver_that_is_down_does_not_fail_or_stall_the_run(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    elapsed, _, answer = _timed_run(tmp_path, {"public_key": "pk-lf-down", "secret_key": "sk-lf-down",
                                               "base_url": down, "flush_timeout_s": 1.0, "export_timeout_s": 1})
    assert answer == "17 times 23 is 391."
    assert elapsed < 1.0 + 4.0  # the flush bound plus generous slack for two busy cores


def test_a_slow_receiver_costs_at_most_the_flush_timeout(otlp_receiver, tmp_path):
    otlp_receiver.delay_s = 20
    elapsed, done, answer = _timed_run(tmp_path, otlp_receiver.settings(flush_timeout_s=1.0, export_timeout_s=1))
    assert answer == "17 times 23 is 391."
    assert done is False  # the export could not finish: reported, not raised
    assert elapsed < 1.0 + 4.0
