"""A learned router at run time: the classify node starts the run on the picked tier, reusing classify's embedding.

Real intent encoder (the shipped demo model), scripted chat models, a tier router over the default tiers (none of
them loads: only ``start_run_at`` is exercised here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.scripted import ScriptedChatModel
from tierflow.agents.decomposer import TaskDecomposer
from tierflow.agents.intents import load_default_classifier
from tierflow.agents.route_features import CHEAP_FEATURES, UNKNOWN_INTENT, LearnedRouting, RouteFeatures
from tierflow.agents.synthesizer import Synthesizer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.orchestrator import OrchestratorDeps, build_orchestrator
from tierflow.graphs.runner import run_request
from tierflow.runtimes.config import default_tiers
from tierflow.runtimes.learned_router import LearnedRouter, LearnedRouterError
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import RoutingPolicy, TierRouter
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

TIERS = ["tiny", "mobile", "edge"]
EASY = ["what is 17*23?", "add 19 and 42", "divide 144 by 12", "what is 15% of 60?", "multiply 6 by 8",
        "what's 999 minus 111?", "compute 2 to the power of 10", "subtract 58 from 230"]
HARD = ["Plan a three-week product launch with research, positioning, a campaign schedule and owners for each step.",
        "Compare three database designs for multi-tenant billing and recommend one with a staged migration plan.",
        "Write a project proposal to migrate our monolith to services with risks, milestones and a rollback plan.",
        "Design two experiments to fix user drop-off in onboarding and explain how to measure each one of them.",
        "Draft a hiring plan for a data team: roles, interview loops and a ninety-day onboarding plan for each.",
        "Organise a two-day offsite for forty people: venues, agenda, travel logistics, budget and communication.",
        "Prepare an incident review of last week's outage with timeline, root causes, actions and owners.",
        "Outline a go-to-market plan for a budgeting app: segments, pricing tests, channels and a yearly roadmap."]


@pytest.fixture(scope="module")
def classifier():
    return load_default_classifier()


@pytest.fixture(scope="module")
def router_dir(classifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A router trained on short arithmetic (every tier passes) vs long multi-step requests (only edge passes)."""
    features = RouteFeatures(classifier)
    texts = EASY + HARD
    intents = [r.label for r in classifier.classify_batch(texts)]
    X = features.matrix(texts, intents, [1.0] * len(EASY) + [0.0] * len(HARD))
    easy = np.array([1.0] * len(EASY) + [0.0] * len(HARD))
    Y = {"tiny": easy, "mobile": easy, "edge": np.ones(len(texts))}
    model = LearnedRouter(l2=1.0).fit(X, Y, TIERS, {"tiny": 0.0005, "mobile": 0.002, "edge": 0.01}, features.names,
                                      {"encoder": features.encoder})
    return model.save(tmp_path_factory.mktemp("learned") / "router")


def tier_router(**tiers) -> TierRouter:
    return TierRouter(registry=TierRegistry({**default_tiers(), **tiers}, "mobile"), policy=RoutingPolicy())


def deps(classifier, learned: LearnedRouting, worker_script: list) -> OrchestratorDeps:
    tools = ToolRegistry(native_tools())
    return OrchestratorDeps(classifier=classifier, decomposer=TaskDecomposer(ScriptedChatModel.of([]), tools.names),
                            worker=WorkerAgent(ScriptedChatModel.of(worker_script), tools),
                            synthesizer=Synthesizer(ScriptedChatModel.of([])), learned_routing=learned)


def test_the_classify_node_starts_the_run_on_the_cheapest_tier_predicted_to_pass(classifier, router_dir,
                                                                                 monkeypatch):
    router = tier_router()
    learned = LearnedRouting.load(router_dir, classifier, router, min_quality=0.8)
    calls: list[tuple[str, str, str]] = []
    original = router.start_run_at
    monkeypatch.setattr(TierRouter, "start_run_at",
                        lambda self, run_id, tier, reason: (calls.append((run_id, tier, reason)),
                                                            original(run_id, tier, reason))[1])
    encoded: list[list[str]] = []
    tokenize = classifier.encoder.tokenize
    monkeypatch.setattr(classifier.encoder, "tokenize", lambda texts: (encoded.append(list(texts)), tokenize(texts))[1])
    graph = build_orchestrator(deps(classifier, learned, [{"action": "finish", "answer": "17*23 is 391."}]))
    result = run_request(graph, "what is 17*23?", run_id="run-easy")
    assert result.answer == "17*23 is 391." and result.intent["label"] == "calculate"
    assert [(run_id, tier) for run_id, tier, _ in calls] == [("run-easy", "tiny")]
    assert calls[0][2].startswith("learned router: tiny predicted") and calls[0][2].endswith(">= 0.80")
    assert calls[0][2] in result.notes
    assert router.run_start("run-easy") == ("tiny", calls[0][2])
    assert encoded == [["what is 17*23?"]]  # classify encoded the request once; the route features reused it


def test_a_hard_request_starts_on_the_strong_tier_and_privacy_narrows_the_choice(classifier, router_dir):
    hard = "Plan a four-week conference with speakers, venue, budget, sponsorship tiers and a marketing schedule."
    router = tier_router()
    learned = LearnedRouting.load(router_dir, classifier, router, min_quality=0.8)
    choice = learned.start_run("run-hard", hard, classifier.classify(hard).label)
    assert choice.tier == "edge" and choice.predictions["edge"] >= 0.8 > choice.predictions["tiny"]
    assert router.run_start("run-hard")[0] == "edge"
    # edge may not see private data here: a private run starts on the likeliest tier that may
    public_edge = default_tiers()["edge"].model_copy(update={"data_classes": ["public"]})
    private_router = tier_router(edge=public_edge)
    learned = LearnedRouting(learned.model, learned.features, private_router, 0.8)
    choice = learned.choose(hard, "plan", private=True)
    assert choice.tier in ("tiny", "mobile") and "edge" not in choice.allowed
    assert "no tier predicted >= 0.80" in choice.reason


def test_route_features_layout(classifier):
    features = RouteFeatures(classifier)
    x = features.vector("add 19 and 42 then 7", "calculate", 2)
    assert len(x) == len(features.names) == 384 + len(classifier.labels) + 1 + len(CHEAP_FEATURES)
    assert features.names[384 + classifier.labels.index("calculate")] == "intent=calculate"
    assert x[384 + classifier.labels.index("calculate")] == 1.0 and x[384:-3].sum() == 1.0
    assert list(x[-3:]) == [pytest.approx(np.log1p(20)), 3.0, 2.0]
    unknown = features.vector("hello", None)
    assert unknown[features.names.index(f"intent={UNKNOWN_INTENT}")] == 1.0
    assert np.allclose(x[:384], classifier.embedding("add 19 and 42 then 7"))


def test_a_router_trained_on_other_features_is_refused(classifier, router_dir, tmp_path):
    model = LearnedRouter.load(router_dir)
    model.feature_names = [*model.feature_names[:-1], "other"]
    with pytest.raises(LearnedRouterError, match="trained on other features"):
        LearnedRouting(model, RouteFeatures(classifier), tier_router(), where="x")
    model = LearnedRouter.load(router_dir)
    model.metadata["encoder"] = "some other encoder"
    with pytest.raises(LearnedRouterError, match="trained on embeddings of some other encoder"):
        LearnedRouting(model, RouteFeatures(classifier), tier_router(), where="x")


def test_settings_wire_the_router_and_resolve_its_folder_beside_the_settings_file(classifier, router_dir,
                                                                                   tmp_path, monkeypatch):
    from tierflow.app import build_deps, load_learned_routing
    from tierflow.settings import load_settings

    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "home"))
    config = router_dir.parent / "tierflow.toml"
    config.write_text('[routing]\nlearned = "router"\nmin_quality = 0.7\n')
    monkeypatch.chdir(tmp_path)  # not the settings file's folder
    settings = load_settings(config)
    assert settings.routing.learned == str(router_dir.resolve())
    learned = load_learned_routing(settings, classifier, tier_router())
    assert learned is not None and learned.min_quality == 0.7 and learned.model.tiers == TIERS
    (tmp_path / "tierflow.toml").write_text('[routing]\nlearned = "no-such-router"\n')
    settings = load_settings(tmp_path / "tierflow.toml")
    with pytest.raises(LearnedRouterError, match="no-such-router does not exist"):
        build_deps(settings, classifier=classifier)
