"""The memory facade behaves the same on every backend: embedded SQLite, Neo4j (graph), Weaviate (vectors)."""

from __future__ import annotations

import pytest

from tierflow.memory.errors import MemoryInputError, UnknownRunError, UnknownTenantError
from tierflow.memory.provenance import build_record

pytestmark = pytest.mark.timeout(300)


def episode(run_id: str, request: str, answer: str, label: str = "plan", **extra: object) -> dict:
    """An episode shaped like the orchestrator's ``remember`` node writes it."""
    return {"run_id": run_id, "request": request, "answer": answer, "pattern": "sequential",
            "intent": {"label": label, "confidence": 0.9, "out_of_scope": False},
            "plan": {"pattern": "sequential", "source": "model", "notes": [], "subtasks": [
                {"id": "calc", "goal": "work out the cost", "role": "analyst", "tools": ["calculator"],
                 "depends_on": []},
                {"id": "say", "goal": "write the answer", "role": "writer", "tools": [], "depends_on": ["calc"]}]},
            "results": [
                {"subtask_id": "calc", "role": "analyst", "output": "It costs 391 euros.", "steps": 2,
                 "stopped": "finished", "tool_calls": [{"tool": "calculator", "args": {"expression": "17*23"},
                                                        "output": "391", "error": False}]},
                {"subtask_id": "say", "role": "writer", "output": answer, "steps": 1, "stopped": "finished",
                 "tool_calls": []}], **extra}


LISBON = episode("run-lisbon", "Plan a weekend in Lisbon with Maria", "Visit Belem Tower and eat pastries.")
ROME = episode("run-rome", "Find a cheap pizza restaurant in Rome", "Try Da Michele near Termini.", label="write")


def test_remember_then_recall_finds_the_relevant_run_first(memory_backend):
    store = memory_backend()
    assert [r.written for r in store.remember_many([LISBON, ROME], user_id="ana")] == [True, True]
    hits = store.search("a trip to Portugal", 3, user_id="ana")
    assert hits[0].run_id == "run-lisbon" and hits[0].kind == "episode"
    assert hits[0].score > hits[-1].score or len(hits) == 1
    assert store.recall("pizza in Italy", 1, user_id="ana")[0].startswith("Request: Find a cheap pizza")


def test_remembering_the_same_run_again_does_not_duplicate(memory_backend):
    store = memory_backend()
    first = store.remember(LISBON, user_id="ana")
    again = store.remember(LISBON, user_id="ana")
    assert first.written and not again.written and store.count(user_id="ana") == first.memories == 3
    # a resumed run with a shorter result rewrites the same ids and drops the stale one
    shorter = {**LISBON, "answer": "Go to Belem.", "results": LISBON["results"][:1]}
    assert store.remember(shorter, user_id="ana").written
    assert store.count(user_id="ana") == 2
    assert len(store.provenance("run-lisbon", user_id="ana").of_kind("Run")) == 1


def test_a_private_runs_memories_are_recalled_marked_private(memory_backend):
    store = memory_backend()
    diary = episode("run-diary", "Plan my visit to Dr Silva about my knee", "Go on Tuesday.", private=True)
    store.remember_many([diary, LISBON], user_id="ana")
    hits = {h.run_id: h.private for h in store.search("plan a visit", 5, user_id="ana")}
    # the data class is stored with the run (every backend), and every memory of that run carries it
    assert hits.get("run-diary") is True and hits.get("run-lisbon") is False
    assert store.provenance("run-diary", user_id="ana").node("run:run-diary").props["private"] is True


def test_one_user_never_sees_another_users_memories(memory_backend):
    store = memory_backend()
    store.remember(LISBON, user_id="ana")
    assert store.recall("weekend in Lisbon", 5, user_id="bob") == []
    with pytest.raises(UnknownRunError, match="run-lisbon"):
        store.provenance("run-lisbon", user_id="bob")
    assert store.neighbours("Lisbon", user_id="bob") == []


def test_filters_narrow_the_search(memory_backend):
    store = memory_backend()
    store.remember_many([LISBON, ROME], user_id="ana")
    subtasks = store.search("cost", 10, user_id="ana", filters={"kind": "subtask"})
    assert subtasks and {h.kind for h in subtasks} == {"subtask"}
    only_write = store.search("travel", 10, user_id="ana", filters={"intent": "write"})
    assert {h.run_id for h in only_write} == {"run-rome"}
    with pytest.raises(MemoryInputError, match="unknown recall filter"):
        store.search("travel", 3, user_id="ana", filters={"colour": "red"})


def test_provenance_links_session_run_intent_plan_subtasks_agents_tools_and_outcomes(memory_backend):
    store = memory_backend()
    store.remember(LISBON, user_id="ana")
    prov = store.provenance("run-lisbon", user_id="ana")
    rels = {(e.src.split(":")[0], e.rel, e.dst.split(":")[0]) for e in prov.edges}
    assert {("session", "HAS_RUN", "run"), ("run", "CLASSIFIED_AS", "intent"), ("run", "PLANNED", "plan"),
            ("plan", "HAS_SUBTASK", "subtask"), ("subtask", "HANDLED_BY", "agent"), ("subtask", "CALLED", "toolcall"),
            ("toolcall", "OF_TOOL", "tool"), ("subtask", "PRODUCED", "outcome"), ("subtask", "DEPENDS_ON", "subtask"),
            ("run", "MENTIONS", "entity")} <= rels
    call = prov.of_kind("ToolCall")[0]
    assert call.props["tool"] == "calculator" and call.props["output"] == "391"
    assert {n.props["name"] for n in prov.of_kind("Entity")} >= {"Lisbon", "Maria"}
    assert prov.node("run:run-lisbon").props["request"] == LISBON["request"]


def test_neighbours_of_an_entity_are_the_runs_that_mention_it(memory_backend):
    store = memory_backend()
    store.remember_many([LISBON, episode("run-porto", "Compare Lisbon and Porto by train", "Porto is 3h away.")],
                        user_id="ana")
    runs = {n.props["run_id"] for n in store.neighbours("lisbon", user_id="ana") if n.kind == "Run"}
    assert runs == {"run-lisbon", "run-porto"}
    two_hops = {n.props.get("name") for n in store.neighbours("Lisbon", user_id="ana", depth=2) if n.kind == "Entity"}
    assert {"Maria", "Porto"} <= two_hops


def test_entity_names_are_data_never_query_text(memory_backend):
    store = memory_backend()
    evil = "X'}) MATCH (n) DETACH DELETE n //"
    store.remember(episode("run-evil", "Tell me about Bobby", "ok", entities=[evil, "Robert'); DROP TABLE nodes;--"]),
                   user_id="ana")
    store.remember(LISBON, user_id="ana")
    found = store.neighbours(evil, user_id="ana")
    assert [n.props["run_id"] for n in found if n.kind == "Run"] == ["run-evil"]
    assert store.provenance("run-lisbon", user_id="ana").of_kind("Run")  # nothing was deleted
    assert store.neighbours("Robert'); DROP TABLE nodes;--", user_id="ana")


def test_forget_removes_a_run_or_a_whole_user_from_both_stores(memory_backend):
    store = memory_backend()
    store.remember_many([LISBON, ROME], user_id="ana")
    store.remember(LISBON, user_id="bob")
    one = store.forget(user_id="ana", run_id="run-rome")
    assert one.memories == 3 and one.nodes > 0
    assert {h.run_id for h in store.search("pizza", 10, user_id="ana")} == {"run-lisbon"}
    everything = store.forget(user_id="ana")
    assert everything.memories == 3 and store.count(user_id="ana") == 0 and store.runs(user_id="ana") == []
    assert store.recall("Lisbon", 3, user_id="ana") == []
    assert store.recall("Lisbon", 3, user_id="bob")  # bob keeps his
    assert store.forget(user_id="nobody") .memories == 0


def copies_in_every_store(store, text: str) -> dict[str, int]:
    """How many stored records hold ``text``, read from each store's raw contents (not through the facade)."""
    found: dict[str, int] = {}
    for part in (store.vectors, store.graph):
        db = getattr(part, "db", None)
        if db is not None:  # embedded SQLite: every namespace, vectors and graph
            conn = db.conn
            found["sqlite"] = (conn.execute("SELECT count(*) FROM memories WHERE text LIKE ?", (f"%{text}%",))
                               .fetchone()[0] + conn.execute("SELECT count(*) FROM nodes WHERE props LIKE ?",
                                                             (f"%{text}%",)).fetchone()[0])
    if hasattr(store.graph, "driver"):  # Neo4j: any property of any node, every namespace
        records, _, _ = store.graph.driver.execute_query(
            "MATCH (n) WHERE any(k IN keys(n) WHERE toString(n[k]) CONTAINS $text) RETURN count(n) AS c", text=text)
        found["neo4j"] = records[0]["c"]
    if hasattr(store.vectors, "client"):  # Weaviate: every object of every tenant
        collection = store.vectors.client.collections.use(store.vectors.name)
        found["weaviate"] = sum(text in str(o.properties.get("text"))
                                for tenant in collection.tenants.get()
                                for o in collection.with_tenant(tenant).iterator())
    return found


def test_forget_leaves_no_copy_of_the_users_text_in_any_store(memory_backend):
    store = memory_backend()
    secret = episode("run-clinic", "Plan my visit to the Zebrafish Clinic", "Ask for Dr Quillfeather.")
    store.remember(secret, user_id="ana")
    store.remember(LISBON, user_id="bob")
    before = copies_in_every_store(store, "Zebrafish")
    assert before and all(n > 0 for n in before.values()), before  # the check sees the text while it is there
    store.forget(user_id="ana")
    assert all(n == 0 for n in copies_in_every_store(store, "Zebrafish").values())
    assert all(n == 0 for n in copies_in_every_store(store, "Quillfeather").values())
    assert all(n > 0 for n in copies_in_every_store(store, "Belem").values())  # bob's memories stay


def test_a_half_written_episode_is_never_recalled(memory_backend):
    """Vectors written but the graph transaction never committed (what a crash between them leaves)."""
    store = memory_backend()
    record = build_record(ROME, store._ns(None, "ana").key)
    store.vectors.upsert(store._ns(None, "ana"), record.items, store.embedder.embed([i.text for i in record.items]))
    assert store.recall("pizza in Rome", 5, user_id="ana") == []
    assert store.remember(ROME, user_id="ana").written  # the retry completes it, with the same ids
    assert store.count(user_id="ana") == 3 and store.recall("pizza in Rome", 1, user_id="ana")


def test_bad_input_gets_typed_errors(memory_backend):
    store = memory_backend(tenants=["acme"], tenant="acme")
    with pytest.raises(MemoryInputError, match="empty"):
        store.recall("   ", 3, user_id="ana")
    with pytest.raises(MemoryInputError, match="limit is 20000"):
        store.recall("x" * 20_001, 3, user_id="ana")
    with pytest.raises(MemoryInputError, match="k must be"):
        store.recall("hello", 1000, user_id="ana")
    with pytest.raises(MemoryInputError, match="user_id"):
        store.recall("hello", 3, user_id="")
    with pytest.raises(UnknownTenantError, match="'globex'"):
        store.recall("hello", 3, user_id="ana", tenant="globex")
    with pytest.raises(MemoryInputError, match="run_id"):
        store.remember({"request": "no id"}, user_id="ana")
    with pytest.raises(MemoryInputError, match="no request"):
        store.remember({"run_id": "r1", "request": ""}, user_id="ana")
    # an oversized episode is stored cut to size, not refused
    huge = episode("run-huge", "Summarise this: " + "lorem ipsum " * 5000, "done " * 5000)
    assert store.remember(huge, user_id="ana").written
    assert len(store.provenance("run-huge", user_id="ana").node("run:run-huge").props["request"]) <= 8000
    assert store.recall("lorem ipsum", 1, user_id="ana")[0].endswith("…[truncated]")
