"""The router's default private patterns: natural phrasing of secrets and personal data marks a call private."""

import pytest
from langchain_core.messages import HumanMessage

from tierflow.runtimes.config import default_tiers
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import TierRouter

PRIVATE = [
    "my password is hunter2",
    "password: hunter2",
    "My PIN code is 1234",
    "the api key is abc123",
    "our secret key is s3cr3t",
    "use sk-abcdefghijklmnopqrstu for the call",
    "AKIAABCDEFGHIJKLMNOP",
    "call me at +44 20 7946 0958",
    "my number is (555) 123-4567",
    "IBAN DE89 3704 0044 0532 0130 00",
    "card 4111 1111 1111 1111",
    "write to ana@example.org",
]
PUBLIC = [
    "What is 17 times 23?",
    "convert 5 km to miles",
    "the year 2024 had 366 days",
    "what is 1234 * 5678",
    "a password manager is useful",
    "Plan a weekend in Lisbon",
    "3.14 + 2.71",
]


@pytest.fixture(scope="module")
def router() -> TierRouter:
    return TierRouter(registry=TierRegistry(default_tiers(), "tiny"))


@pytest.mark.parametrize("text", PRIVATE)
def test_private_text_is_caught(router, text):
    assert router.is_private([HumanMessage(text)])


@pytest.mark.parametrize("text", PUBLIC)
def test_ordinary_requests_stay_public(router, text):
    assert not router.is_private([HumanMessage(text)])
