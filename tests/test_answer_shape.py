"""A request that asks for JSON gets the JSON itself, without the prose and code fence small models add."""

from tierflow.agents.answer_shape import shape_answer

FENCED = 'Certainly! Here is a JSON object:\n\n```json\n{\n  "title": "1984",\n  "author": "George Orwell"\n}\n```'


def test_a_single_fenced_json_block_is_unwrapped_when_json_was_asked_for() -> None:
    answer = shape_answer('write a JSON object with the keys "title" and "author"', FENCED)
    assert answer == '{\n  "title": "1984",\n  "author": "George Orwell"\n}'


def test_answers_are_left_alone_unless_json_was_asked_for_and_the_block_parses() -> None:
    assert shape_answer("write a short poem about the sea", FENCED) == FENCED  # JSON not asked for
    broken = "```json\n{title: 1984}\n```"
    assert shape_answer("give me JSON", broken) == broken  # not JSON: the model's text stays as it is
    two = "```json\n[1]\n```\nor\n```json\n[2]\n```"
    assert shape_answer("a JSON array please", two) == two  # two candidates: nothing to choose between
    assert shape_answer("a JSON array please", '["a", "b"]') == '["a", "b"]'
