"""The tier router on real runtimes: privacy, fallback and circuits, timeouts, budgets, escalation."""

import threading
import time

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

from tests.conftest import cloud_tier
from tierflow.runtimes.accounting import ModelCallRecorder
from tierflow.runtimes.config import TierConfig, default_tiers
from tierflow.runtimes.errors import (
    BudgetExceeded,
    NoTierAvailable,
    StructuredOutputError,
    TierConfigError,
    TierTimeoutError,
)
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import BudgetPolicy, CallInfo, RoutingPolicy, TierRouter
from tierflow.runtimes.structured import invoke_json

pytestmark = [pytest.mark.model, pytest.mark.server]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


class Clock:
    """A time source the test advances, so cool-downs do not depend on how busy the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def router(tiers: dict[str, TierConfig], clock=time.monotonic, **policy) -> TierRouter:
    """A router over the in-process ``tiny`` tier (SmolLM2) and ``tiers``.

    The default install's Qwen tiers are left out: the router falls back to every declared tier, and these
    tests are about the routing rules, not about loading the larger models.
    """
    registry = TierRegistry({"tiny": default_tiers()["tiny"], **tiers}, "tiny")
    return TierRouter(registry=registry, policy=RoutingPolicy(**policy), clock=clock)


def route_of(message) -> dict:
    return message.response_metadata["route"]


def only_tiny(info: CallInfo, candidates: list[str]) -> list[str]:
    """A user policy: keep everything on the device for the 'planner' agent."""
    return [c for c in candidates if c == "tiny"] if info.agent == "planner" else candidates


def test_private_data_never_leaves_the_device_even_when_cloud_is_preferred(cloud_server):
    r = router({"cloud": cloud_tier(cloud_server, max_tokens=8)}, order=["cloud", "tiny"])
    public = r.invoke("Say hi.", max_tokens=8)
    assert route_of(public)["tier"] == "cloud" and route_of(public)["rule"] == "preference"

    by_pattern = r.invoke("My e-mail is ana@example.org, say hi.", max_tokens=8)
    assert route_of(by_pattern)["tier"] == "tiny" and route_of(by_pattern)["rule"] == "privacy"
    assert route_of(by_pattern)["skipped"]["cloud"] == "not cleared for private data"

    flagged = HumanMessage("Summarise my diary.", additional_kwargs={"private": True})
    assert route_of(r.invoke([flagged], max_tokens=8))["tier"] == "tiny"
    # naming the cloud tier explicitly does not override privacy
    assert route_of(r.invoke([flagged], tier="cloud", max_tokens=8))["tier"] == "tiny"
    # a run marked private keeps every call on the device
    recorder = ModelCallRecorder()
    r.invoke("Say hi.", {"metadata": {"tierflow_private": True}, "callbacks": [recorder]}, max_tokens=8)
    assert [c.tier for c in recorder.calls] == ["tiny"]


def test_private_data_with_no_cleared_tier_is_refused(cloud_server):
    registry = TierRegistry({"cloud": cloud_tier(cloud_server)}, "cloud")
    r = TierRouter(registry=registry)
    with pytest.raises(NoTierAvailable, match="cloud: not cleared for private data"):
        r.invoke("card 4111 1111 1111 1111")


def test_a_killed_cloud_server_falls_back_opens_the_circuit_and_closes_after_cooldown(killable_server):
    clock = Clock()
    r = router({"cloud": cloud_tier(killable_server.base_url, max_tokens=8)}, clock, order=["cloud", "tiny"],
               circuit_failures=1, circuit_cooldown_s=30.0)
    recorder = ModelCallRecorder()

    class KillAfterFirstCall(BaseCallbackHandler):
        def on_llm_end(self, *args, **kwargs):
            killable_server.kill()

    first = r.invoke("Say hi.", {"callbacks": [recorder, KillAfterFirstCall()]}, max_tokens=8)
    assert route_of(first)["tier"] == "cloud"
    second = r.invoke("Say hi.", {"callbacks": [recorder]}, max_tokens=8)
    assert route_of(second)["tier"] == "tiny" and route_of(second)["fallback_from"] == "cloud"
    assert route_of(second)["attempt"] == 2 and "Connection" in route_of(second)["reason"]
    assert r.circuit_state("cloud") == "open"
    third = r.invoke("Say hi.", {"callbacks": [recorder]}, max_tokens=8)
    assert route_of(third)["skipped"]["cloud"] == "circuit open after failures" and route_of(third)["attempt"] == 1
    assert [(c.tier, c.rule, c.fallback_from) for c in recorder.calls] == [
        ("cloud", "preference", None), ("tiny", "fallback", "cloud"), ("tiny", "fallback", None)]

    killable_server.start()
    clock.now += 29.0
    assert r.circuit_state("cloud") == "open"
    clock.now += 1.0
    assert r.circuit_state("cloud") == "half_open"
    fourth = r.invoke("Say hi.", max_tokens=8)
    assert route_of(fourth)["tier"] == "cloud", route_of(fourth)["reason"]
    assert r.circuit_state("cloud") == "closed"


def test_a_hanging_tier_is_cut_off_at_its_timeout(hanging_server):
    r = router({"cloud": cloud_tier(hanging_server, timeout_s=1.0, max_retries=0)}, order=["cloud", "tiny"])
    started = time.monotonic()
    reply = r.invoke("Say hi.", max_tokens=8)
    assert route_of(reply)["tier"] == "tiny" and route_of(reply)["fallback_from"] == "cloud"
    assert "Timeout" in route_of(reply)["reason"]
    assert time.monotonic() - started < 60  # bounded by the timeout, not by the hang


def test_the_in_process_tier_is_cut_off_too():
    r = router({})
    with pytest.raises(NoTierAvailable, match=r"did not finish within 0\.05 s"):
        r.invoke("Write a long story about a dragon.", timeout_s=0.05, max_tokens=200)


def test_failures_are_kept_as_exceptions_in_the_error_and_in_the_shared_circuit():
    r = router({})
    worker = r.for_agent("worker")
    with pytest.raises(NoTierAvailable) as info:
        worker.invoke("Write a long story about a dragon.", timeout_s=0.05, max_tokens=200)
    error = info.value.errors["tiny"]
    assert isinstance(error, TierTimeoutError) and info.value.tried == ["tiny"]
    assert worker.shared_state is r.shared_state and r.shared_state.circuits["tiny"].last_error is error


def test_budget_exhaustion_across_parallel_branches_raises_with_exact_usage():
    r = router({}, budget=BudgetPolicy(max_tokens=150, on_exceed="raise"))
    recorder = ModelCallRecorder()
    config = {"metadata": {"tierflow_run_id": "run-b"}, "callbacks": [recorder]}
    outcomes: list[object] = []

    def branch() -> None:
        try:
            outcomes.append(r.invoke("Say hi.", config, max_tokens=8))
        except BudgetExceeded as exc:
            outcomes.append(exc)

    for _ in range(3):  # three rounds of four parallel branches
        threads = [threading.Thread(target=branch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    errors = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert errors and len(outcomes) == 12
    spent = sum(c.input_tokens + c.output_tokens for c in recorder.calls if c.error is None)
    assert r.ledger("run-b")["tokens"] == spent >= 150
    assert errors[-1].limit == "tokens" and errors[-1].usage["tokens"] == spent
    assert r.ledger("another-run")["tokens"] == 0  # budgets are per run


def test_budget_exhaustion_can_degrade_to_the_cheapest_tier(cloud_server):
    pricey = cloud_tier(cloud_server, max_tokens=8, cost_per_1k_input=10.0, cost_per_1k_output=30.0)
    r = router({"cloud": pricey}, order=["cloud", "tiny"], budget=BudgetPolicy(max_cost=0.01, on_exceed="degrade"))
    config = {"metadata": {"tierflow_run_id": "run-d"}}
    first = r.invoke("Say hi.", config, max_tokens=8)
    assert route_of(first)["tier"] == "cloud" and r.ledger("run-d")["cost"] >= 0.01
    second = r.invoke("Say hi.", config, max_tokens=8)
    assert route_of(second)["tier"] == "tiny" and route_of(second)["rule"] == "budget_degrade"
    assert "budget exhausted" in route_of(second)["skipped"]["cloud"]


def test_schema_failure_escalates_tiny_to_edge_to_cloud_within_the_bound(cloud_server):
    # three tokens cannot hold the object, so tiny's and edge's answers fail the schema
    short = TierConfig(kind="llamacpp", max_tokens=3, strength=0, json_mode="json_object")
    edge = TierConfig(kind="torch", max_tokens=3, strength=2, n_threads=1, quantize="int8")
    strong = cloud_tier(cloud_server, max_tokens=96, strength=3)
    tiers = {"tiny": short, "edge": edge, "cloud": strong}
    recorder = ModelCallRecorder()
    r = router(tiers, order=["tiny", "edge", "cloud"], max_escalations=2)
    value = invoke_json(r, "Give a name and an age as JSON.", SCHEMA, {"callbacks": [recorder]})
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    # every reply is a model call: the two the schema turned down (with their tokens), then the accepted one
    tiny_call, edge_call, call = recorder.calls
    assert [(c.tier, c.rule, c.check) for c in (tiny_call, edge_call)] == [("tiny", "rejected", "schema"),
                                                                          ("edge", "rejected", "schema")]
    assert tiny_call.output_tokens == 3 and edge_call.output_tokens >= 1
    assert (call.tier, call.rule, call.fallback_from, call.attempt, call.check) == (
        "cloud", "escalate", "edge", 3, "schema")

    bounded = router(tiers, order=["tiny", "edge", "cloud"], max_escalations=1)
    with pytest.raises(StructuredOutputError):  # tiny -> edge, then the bound stops it
        invoke_json(bounded, "Give a name and an age as JSON.", SCHEMA)


def test_the_default_tiers_escalate_a_failed_schema_from_tiny_to_mobile():
    # the default install's ladder: tiny (SmolLM2) -> mobile (Qwen2.5-Coder-0.5B) -> edge (Qwen 1.5B)
    tiers = {**default_tiers(), "tiny": default_tiers()["tiny"].model_copy(update={"max_tokens": 3})}
    r = TierRouter(registry=TierRegistry(tiers, "tiny"), policy=RoutingPolicy(max_escalations=1))
    recorder = ModelCallRecorder()
    value = invoke_json(r, "Give a name and an age as JSON.", SCHEMA, {"callbacks": [recorder]})
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    rejected, call = recorder.calls
    assert (rejected.tier, rejected.rule, rejected.check, rejected.output_tokens) == ("tiny", "rejected", "schema", 3)
    assert rejected.logprob_mean is not None and rejected.logprob_min <= rejected.logprob_mean <= 0
    assert (call.tier, call.model, call.rule, call.fallback_from, call.check) == (
        "mobile", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "escalate", "tiny", "schema")
    assert call.logprob_mean is not None  # llama.cpp tiers report their confidence


def test_a_user_policy_function_narrows_the_choice(cloud_server):
    r = router({"cloud": cloud_tier(cloud_server, max_tokens=8)}, order=["cloud", "tiny"],
               policy_fn="tests.test_router:only_tiny")
    assert route_of(r.for_agent("planner").invoke("Say hi.", max_tokens=8))["tier"] == "tiny"
    assert route_of(r.for_agent("planner").invoke("Say hi.", max_tokens=8))["rule"] == "policy_fn"
    assert route_of(r.for_agent("worker").invoke("Say hi.", max_tokens=8))["tier"] == "cloud"


def test_streaming_through_the_router_reports_the_route():
    chunks = list(router({}).stream("Count to three.", max_tokens=12))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.text and total.response_metadata["route"]["tier"] == "tiny"
    assert total.usage_metadata["output_tokens"] > 0


def test_bad_routing_configuration_fails_at_construction():
    with pytest.raises(TierConfigError, match="cannot be loaded"):
        router({}, policy_fn="no_such_module:fn")
    with pytest.raises(KeyError, match="unknown tier 'gpu'"):
        router({}, order=["gpu"])
