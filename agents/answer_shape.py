"""Answer shaping: a request that asks for JSON gets the JSON, not the prose and code fence around it.

Small models wrap JSON in "Here's a JSON object: ```json … ```"; a caller that asked for JSON would have to
strip that by hand, so the orchestrator does it once, only when the fenced block really parses as JSON.
"""

from __future__ import annotations

import json
import re

_ASKS_FOR_JSON = re.compile(r"\bjson\b", re.IGNORECASE)
_FENCED = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n[ \t]*```", re.DOTALL)


def shape_answer(request: str, answer: str) -> str:
    """``answer`` with a single fenced JSON block unwrapped when ``request`` asks for JSON; else unchanged."""
    if not _ASKS_FOR_JSON.search(request) or "```" not in answer:
        return answer
    blocks = _FENCED.findall(answer)
    if len(blocks) != 1:  # none, or several: no single JSON answer to pick, so leave the prose alone
        return answer
    body = blocks[0].strip()
    try:
        json.loads(body)
    except ValueError:
        return answer
    return body
