"""What the mask replaces before export: secret-named fields, secret-shaped text, data marked private."""

from tracing import Masker
from tracing.config import MaskSettings


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
