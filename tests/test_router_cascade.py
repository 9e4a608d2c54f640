"""The verified cascade on real tiers: a reply that fails a check (confidence, a caller's grounding check) goes up
the cascade, within privacy, and ``model_calls`` says which check failed, with its value."""

import pytest
from langchain_core.messages import AIMessage

from tests.conftest import cloud_tier
from tierflow.agents.synthesizer import Synthesizer, grounding_check, grounding_sources
from tierflow.agents.worker import ToolCallRecord, WorkerResult
from tierflow.runtimes.accounting import ModelCallRecorder
from tierflow.runtimes.checks import CheckResult, confidence_check
from tierflow.runtimes.config import TierConfig, default_tiers
from tierflow.runtimes.context import RunContext
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import RoutingPolicy, TierRouter
from tierflow.tools.grounding import ungrounded

pytestmark = [pytest.mark.model]
QUESTION = "What is the capital of Kiribati? One word."


def cascade(tiers: dict[str, TierConfig] | None = None, **policy) -> TierRouter:
    """tiny (SmolLM2-135M) then mobile (Qwen2.5-Coder-0.5B), cheapest first, plus ``tiers``."""
    defaults = default_tiers()
    small = {"tiny": defaults["tiny"].model_copy(update={"max_tokens": 12}),
             "mobile": defaults["mobile"].model_copy(update={"max_tokens": 12}), **(tiers or {})}
    return TierRouter(registry=TierRegistry(small, "tiny"), policy=RoutingPolicy(**policy))


def test_a_low_confidence_reply_escalates_and_model_calls_say_why():
    recorder = ModelCallRecorder()
    # No small model is this sure of every token: tiny's reply fails the mean log-probability check.
    r = cascade(cascade=["tiny", "mobile"], checks={"min_mean_logprob": -0.0001}, max_escalations=1)
    reply = r.invoke(QUESTION, {"callbacks": [recorder]})
    rejected, accepted = recorder.calls
    assert (rejected.tier, rejected.rule, rejected.check) == ("tiny", "rejected", "logprob_mean")
    assert rejected.value == rejected.logprob_mean < -0.0001 and rejected.output_tokens > 0
    assert (accepted.tier, accepted.rule, accepted.fallback_from, accepted.check) == (
        "mobile", "escalate", "tiny", "logprob_mean")
    assert accepted.value == rejected.value  # the value that sent the call up
    route = reply.response_metadata["route"]
    # mobile is the top of this cascade: its reply is kept, and the check it failed too is recorded, not hidden
    assert route["unverified"]["check"] == "logprob_mean" and "failed check logprob_mean" in route["reason"]


def test_a_confident_enough_reply_stays_on_the_cheap_tier():
    recorder = ModelCallRecorder()
    r = cascade(cascade=["tiny", "mobile"], checks={"min_mean_logprob": -50.0, "min_token_logprob": -100.0})
    reply = r.invoke(QUESTION, {"callbacks": [recorder]})
    [call] = recorder.calls
    assert call.tier == "tiny" and call.rule == "preference" and call.check is None
    assert call.logprob_min <= call.logprob_mean <= 0
    assert reply.response_metadata["route"]["unverified"] is None


def test_a_callers_check_escalates_and_the_bound_holds():
    recorder = ModelCallRecorder()
    always = lambda message: CheckResult("grounding", "7", detail="test: every reply fails")  # noqa: E731
    r = cascade(cascade=["tiny", "mobile"], max_escalations=0)
    r.bind(verify=always).invoke(QUESTION, {"callbacks": [recorder]})
    [call] = recorder.calls  # max_escalations = 0: the first reply stands
    assert call.tier == "tiny" and call.check is None
    escalating = cascade(cascade=["tiny", "mobile"], max_escalations=1)
    reply = escalating.bind(verify=always).invoke(QUESTION, {"callbacks": [recorder]})
    assert [(c.tier, c.rule, c.check) for c in recorder.calls[1:]] == [("tiny", "rejected", "grounding"),
                                                                       ("mobile", "escalate", "grounding")]
    assert reply.response_metadata["route"]["unverified"]["detail"] == "test: every reply fails"


def test_escalation_never_takes_private_data_to_a_tier_not_cleared_for_it(cloud_server):
    recorder = ModelCallRecorder()
    cloud = cloud_tier(cloud_server, max_tokens=12, strength=5)  # public data only, and the strongest
    r = cascade({"cloud": cloud}, cascade=["tiny", "mobile", "cloud"], checks={"min_mean_logprob": -0.0001},
                max_escalations=2)
    config = RunContext(run_id="private-run", private=True).apply({"callbacks": [recorder]})
    reply = r.invoke(QUESTION, config)
    assert [c.tier for c in recorder.calls] == ["tiny", "mobile"]
    assert reply.response_metadata["route"]["skipped"]["cloud"] == "not cleared for private data"
    public = r.invoke(QUESTION, {"callbacks": [recorder]})
    assert [c.tier for c in recorder.calls[2:]] == ["tiny", "mobile", "cloud"]  # public data may go all the way
    assert public.response_metadata["route"]["tier"] == "cloud"


def test_a_learned_start_skips_the_weaker_tiers_for_that_run_only():
    recorder = ModelCallRecorder()
    r = cascade(cascade=["tiny", "mobile"])
    r.start_run_at("hard-run", "mobile", "learned router: mobile predicted 0.91 >= 0.80")
    hard = r.invoke(QUESTION, RunContext(run_id="hard-run").apply({"callbacks": [recorder]}))
    easy = r.invoke(QUESTION, RunContext(run_id="easy-run").apply({"callbacks": [recorder]}))
    assert hard.response_metadata["route"]["rule"] == "learned"
    assert hard.response_metadata["route"]["skipped"]["tiny"].startswith("learned router: mobile predicted")
    assert [c.tier for c in recorder.calls] == ["mobile", "tiny"]
    assert easy.response_metadata["route"]["rule"] == "preference"


def test_the_grounding_check_names_the_invented_numbers():
    sources = ["What is 17 times 23?", "391"]
    check = grounding_check(sources)
    assert check(AIMessage("17 times 23 is 391.")) is None
    failed = check(AIMessage("17 times 23 is 419."))
    assert (failed.check, failed.value) == ("grounding", "419")
    confident = AIMessage("x", response_metadata={"confidence": {"logprob_mean": -0.2, "logprob_min": -3.0}})
    assert confidence_check(confident, -0.5, None) is None
    assert confidence_check(confident, -0.5, -2.0).record()["check"] == "logprob_min"
    assert confidence_check(AIMessage("no confidence reported"), -0.1, -0.1) is None


def test_the_synthesizers_answer_is_grounded_or_says_it_is_not():
    request = "What is 27 times 34, and what is 12 plus 5?"
    results = [WorkerResult(subtask_id="a", role="math", output="27 times 34 is 918",
                            tool_calls=[ToolCallRecord(tool="calculator", args={"expression": "27*34"}, output="918")]),
               WorkerResult(subtask_id="b", role="math", output="12 plus 5 is 17")]
    sources = grounding_sources(request, results)
    recorder = ModelCallRecorder()
    on = cascade(cascade=["tiny", "mobile"], checks={"grounding": True}, max_escalations=1)
    answer = Synthesizer(on).synthesize(request, results, {"callbacks": [recorder]}).answer
    final = recorder.calls[-1]
    # either the kept answer claims only numbers the request and results gave, or its route says it did not
    assert not ungrounded(answer, sources) or final.unverified == "grounding"
    for rejected in recorder.calls[:-1]:  # a turned-down reply named the numbers it invented
        assert rejected.check == "grounding" and set(str(rejected.value).split(", ")) <= set(ungrounded(
            str(rejected.value), sources))
    off = cascade(cascade=["tiny", "mobile"], max_escalations=1)  # the default: no grounding check in the router
    calls = ModelCallRecorder()
    Synthesizer(off).synthesize(request, results, {"callbacks": [calls]})
    assert [c.tier for c in calls.calls] == ["tiny"] and calls.calls[0].unverified is None
