"""The run context travels in config metadata under fixed keys; the router's decision in response_metadata."""

from langchain_core.messages import AIMessage

from tierflow.runtimes.context import PRIVATE_KEY, RunContext, route_of, set_route


def test_a_context_written_into_a_config_reads_back_the_same_and_keeps_other_metadata() -> None:
    context = RunContext(run_id="run-1", user_id="ann", private=True)
    config = context.apply({"metadata": {"thread_id": "run-1", "custom": 3}, "recursion_limit": 9})
    assert RunContext.of(config) == context
    assert config["metadata"]["custom"] == 3 and config["recursion_limit"] == 9
    # Unset fields are not written: a pinned tier only appears when there is one.
    assert "tierflow_tier" not in config["metadata"] and config["metadata"][PRIVATE_KEY] is True


def test_an_empty_or_foreign_config_is_a_public_anonymous_context() -> None:
    assert RunContext.of(None) == RunContext()
    assert RunContext.of({"metadata": {"langgraph_node": "plan"}}) == RunContext()
    assert RunContext.from_metadata({"tierflow_tier": "mobile"}).tier == "mobile"


def test_making_a_context_private_is_one_way_and_leaves_the_original_alone() -> None:
    public = RunContext(run_id="r", user_id="u")
    private = public.made_private()
    assert private.private and not public.private
    assert private.made_private() is private
    assert RunContext.of(private.apply({})).run_id == "r"


def test_the_route_of_a_reply_is_what_the_router_set_and_none_for_a_plain_reply() -> None:
    reply = AIMessage(content="391")
    assert route_of(reply) is None
    set_route(reply, {"tier": "mobile", "rule": "order", "attempt": 1})
    assert route_of(reply) == {"tier": "mobile", "rule": "order", "attempt": 1}
    assert reply.response_metadata["tier"] == "mobile"
