"""What the mask replaces before export: secret-named fields, secret-shaped text, data marked private."""

import json
from dataclasses import dataclass, field

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.types import Send
from pydantic import BaseModel, SecretStr

from tierflow.runtimes.router import DEFAULT_PRIVATE_PATTERNS, RoutingPolicy
from tierflow.settings import Settings
from tierflow.tracing import Masker
from tierflow.tracing.config import MaskSettings


def test_secret_named_fields_are_replaced_at_any_depth_and_counts_are_kept():
    data = {"api_key": "abc", "db": {"password": "p", "Authorization": "Basic eA==", "user": "ann"},
            "usage": {"input_tokens": 10, "max_tokens": 64}, "tools": [{"client_secret": "s"}]}
    masked = Masker().mask(data)
    assert masked == {"api_key": "[REDACTED]", "db": {"password": "[REDACTED]", "Authorization": "[REDACTED]",
                                                       "user": "ann"},
                      "usage": {"input_tokens": 10, "max_tokens": 64}, "tools": [{"client_secret": "[REDACTED]"}]}
    assert data["api_key"] == "abc"  # the run's own data is untouched


def test_secret_shaped_text_is_replaced_inside_free_text():
    text = ('use sk-proj-abcdefghijklmnop with "Bearer abc.def-ghi" and password: hunter2, '
            '{"api_key": "zzz"} github ghp_0123456789abcdefghijABCDEFGHIJ')
    masked = Masker().mask_text(text)
    for secret in ("sk-proj-abcdefghijklmnop", "abc.def-ghi", "hunter2", "zzz", "ghp_0123456789"):
        assert secret not in masked
    assert masked.startswith("use [REDACTED] with")


def test_private_data_is_replaced_whole():
    masker = Masker()
    assert masker.mask({"memory": {"privacy": "private", "text": "diagnosis"}}) == {"memory": "[PRIVATE]"}
    assert masker.mask([{"private": True, "x": 1}, {"private": False, "x": 2}]) == ["[PRIVATE]",
                                                                                   {"private": False, "x": 2}]
    assert masker.mask("I live at <private>12 Elm St</private>.") == "I live at [PRIVATE]."


def test_masking_is_configurable():
    masker = Masker(MaskSettings(secret_fields="ssn", secret_patterns=[r"\d{3}-\d{2}-\d{4}"], private_markers=["pii"],
                                 replacement="***"))
    assert masker.mask({"ssn": "x", "password": "kept"}) == {"ssn": "***", "password": "kept"}
    assert masker.mask("call 123-45-6789 <pii>Ann</pii>") == "call *** [PRIVATE]"
    assert Masker(MaskSettings(enabled=False))(data={"password": "p"}) == {"password": "p"}


# -- every type is masked, private patterns, private runs ------------------------------------------------------
EMAIL, CARD, PASSWORD = "ann.lee@example.com", "4111 1111 1111 1111", "hunter2-XYZ"
REQUEST = f"mail {EMAIL}, card {CARD}, my password is {PASSWORD}"


def exported(masked):
    """The masked value as the SDK would export it: plain JSON, with no secret left in it."""
    text = json.dumps(masked)  # raises if anything but plain JSON data came back
    for secret in (EMAIL, CARD, PASSWORD):
        assert secret not in text
    return masked


class Subtask(BaseModel):
    goal: str
    api_key: SecretStr
    owner: dict


@dataclass
class Branch:
    request: str
    tags: set[str] = field(default_factory=set)
    password: str = "p"


class Opaque:
    """An object that only its text describes."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"Opaque({EMAIL})"


class Plain:
    def __init__(self) -> None:
        self.note = REQUEST
        self.token = "t0k3n"


class Broken:
    """An object whose fields cannot be read; its text still can."""

    @property
    def __dict__(self):  # type: ignore[override]
        raise RuntimeError("no fields")

    def __str__(self) -> str:
        return f"Broken {CARD}"


def test_router_private_patterns_are_masked_in_free_text():
    masker = Masker()
    assert masker.mask(REQUEST) == "mail [PRIVATE], card [PRIVATE], my [PRIVATE]"
    for text in ("pin: 4321", "api_key=abc123", "IBAN DE89 3704 0044 0532 0130 00", "call +44 20 7946 0958"):
        masked = masker.mask_text(f"x {text} y")
        assert "[PRIVATE]" in masked and not any(c.isdigit() for c in masked.replace("x ", "")), masked
    assert masker.mask("what is 17*23? run-42 at 2024-11-30T12:00:00") == "what is 17*23? run-42 at 2024-11-30T12:00:00"
    assert Masker(MaskSettings(private_patterns=[])).mask(EMAIL) == EMAIL


def test_a_send_is_masked_as_node_and_state():
    masked = exported(Masker().mask([Send("branch", {"request": REQUEST, "password": "p"})]))
    assert masked == [{"node": "branch", "arg": {"request": "mail [PRIVATE], card [PRIVATE], my [PRIVATE]",
                                                 "password": "[REDACTED]"}}]


def test_pydantic_models_dataclasses_sets_and_messages_are_masked():
    masker = Masker()
    model = exported(masker.mask(Subtask(goal=REQUEST, api_key=SecretStr("sk"), owner={EMAIL: 1})))
    assert model == {"goal": "mail [PRIVATE], card [PRIVATE], my [PRIVATE]", "api_key": "[REDACTED]",
                     "owner": {"[PRIVATE]": 1}}  # an e-mail as a key goes too
    branch = exported(masker.mask(Branch(request=EMAIL, tags={CARD})))
    assert branch == {"request": "[PRIVATE]", "tags": ["[PRIVATE]"], "password": "[REDACTED]"}
    assert exported(masker.mask({EMAIL, "ok"})) in (["[PRIVATE]", "ok"], ["ok", "[PRIVATE]"])
    assert exported(masker.mask(frozenset({1}))) == [1]
    messages = exported(masker.mask({"messages": [HumanMessage(REQUEST), AIMessage(f"sent to {EMAIL}")]}))
    assert [m["content"] for m in messages["messages"]] == ["mail [PRIVATE], card [PRIVATE], my [PRIVATE]",
                                                            "sent to [PRIVATE]"]


def test_arbitrary_objects_are_masked_by_fields_or_text_never_returned_as_they_are():
    masker = Masker()
    assert exported(masker.mask(Opaque())) == "Opaque([PRIVATE])"
    assert exported(masker.mask(Plain())) == {"note": "mail [PRIVATE], card [PRIVATE], my [PRIVATE]",
                                              "token": "[REDACTED]"}
    assert exported(masker.mask(Broken())) == "Broken [PRIVATE]"
    assert exported(masker.mask(ValueError(f"bad {EMAIL}"))) == "ValueError: bad [PRIVATE]"
    assert exported(masker.mask(b"to " + EMAIL.encode())) == "to [PRIVATE]"
    cyclic: dict = {"a": EMAIL}
    cyclic["self"] = cyclic
    assert exported(masker.mask(cyclic)) == {"a": "[PRIVATE]", "self": "<cycle: dict>"}
    assert masker(data=Plain()) == masker.mask(Plain())  # the SDK's entry point does the same


def test_a_private_run_s_data_is_replaced_whole_but_its_ids_stay():
    masker = Masker()
    with Masker.private_scope():
        assert masker(data="anything at all") == "[PRIVATE]"
        assert masker(data=[Send("branch", {"x": 1})]) == "[PRIVATE]"
        assert masker(data={"tierflow_run_id": "run-7", "user_id": "ann", "tierflow_private": True,
                            "request": "zebra", "tier": "mobile"}) == {
            "tierflow_run_id": "run-7", "user_id": "ann", "tierflow_private": True, "request": "[PRIVATE]",
            "tier": "mobile"}
    assert masker(data="zebra") == "zebra"  # only inside the scope
    assert Masker(MaskSettings(mask_private_runs=False)).__call__(data="zebra") == "zebra"


def test_tracing_masks_the_routers_private_patterns_by_default_and_as_configured():
    assert MaskSettings().private_patterns == DEFAULT_PRIVATE_PATTERNS == RoutingPolicy().private_patterns
    assert Settings().tracing.mask.private_patterns == DEFAULT_PRIVATE_PATTERNS
    custom = Settings(routing={"private_patterns": [r"\bZX\d+"]})
    assert custom.tracing.mask.private_patterns == [r"\bZX\d+"]
    assert Masker(custom.tracing.mask).mask(f"ZX123 {EMAIL}") == f"[PRIVATE] {EMAIL}"
    own = Settings(routing={"private_patterns": [r"\bZX\d+"]}, tracing={"mask": {"private_patterns": []}})
    assert own.tracing.mask.private_patterns == []  # set under [tracing.mask] itself: kept
    with pytest.raises(ValueError, match="private_patterns"):
        MaskSettings(private_patterns=["("])


def test_long_text_is_masked_everywhere_in_it():
    # long text is searched in overlapping windows: an address is found whole wherever it falls
    masker = Masker()
    for offset in range(900, 1200, 7):
        text = "w " * (offset // 2) + f"to {EMAIL} and {CARD} " + "q " * 900
        masked = masker.mask_text(text)
        assert EMAIL not in masked and "ann.lee" not in masked and "4111" not in masked
        assert masked.count("[PRIVATE]") == 2
    assert masker.mask_text("a" * 50_000) == "a" * 50_000  # a long unbroken token: no e-mail in it, and quick
