"""Edge tier prompts: LangChain messages as the role/content dicts a tokenizer's chat template takes.

The torch runtime cannot constrain decoding to a schema, so a requested ``response_format`` becomes an
instruction at the end of the prompt and the router validates the reply.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage

from tierflow.runtimes.schema import asks_for_json, schema_of

# Used when a GGUF carries no chat template: one "role: text" line per message.
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)

_ROLES: dict[type[BaseMessage], str] = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant",
                                        ToolMessage: "tool"}


def ensure_chat_template(tokenizer: Any) -> Any:
    """``tokenizer`` with :data:`PLAIN_TEMPLATE` when its GGUF carried no chat template."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_TEMPLATE
    return tokenizer


def chat_dicts(messages: list[BaseMessage], response_format: Any) -> list[dict[str, str]]:
    """LangChain messages as the role/content dicts chat templates take, plus a JSON instruction."""
    chat = []
    for message in messages:
        if isinstance(message, ChatMessage):
            role = message.role
        else:
            role = next((name for kind, name in _ROLES.items() if isinstance(message, kind)), "user")
        text = message.text if isinstance(message.content, list) else str(message.content)
        chat.append({"role": role, "content": text})
    instruction = json_instruction(response_format)
    if instruction:
        if chat and chat[-1]["role"] == "user":
            chat[-1] = {"role": "user", "content": f"{chat[-1]['content']}\n\n{instruction}"}
        else:
            chat.append({"role": "user", "content": instruction})
    return chat


def json_instruction(response_format: Any) -> str | None:
    """The instruction that stands in for schema-constrained decoding (None when no JSON is asked for)."""
    if not asks_for_json(response_format):
        return None
    schema = schema_of(response_format)
    if schema:
        return ("Reply with a single JSON object and nothing else. It must follow this JSON schema:\n"
                + json.dumps(schema, separators=(",", ":")))
    return "Reply with a single JSON object and nothing else."
