from __future__ import annotations

import json

import pytest

from draftforge.errors import DraftforgeError
from draftforge.evaluate.prompts import encode, load_prompts


def test_humaneval_set():
    prompts = load_prompts("humaneval", 3)
    assert [p.id for p in prompts] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(p.category == "code" and not p.chat for p in prompts)
    assert len(load_prompts("humaneval")) == 164


def test_builtin_chat_set_has_categories():
    prompts = load_prompts("chat-mini")
    assert len(prompts) == 16 and all(p.chat for p in prompts)
    assert len({p.category for p in prompts}) == 8


def test_mtbench_jsonl_uses_first_turn(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {"question_id": 81, "category": "writing", "turns": ["first", "second"]},
        {"question_id": 82, "category": "math", "turns": ["solve"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    prompts = load_prompts(str(path))
    assert [(p.id, p.category, p.text) for p in prompts] == [
        ("81", "writing", "first"),
        ("82", "math", "solve"),
    ]


def test_bad_jsonl_names_the_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"turns": []}\nnot json\n')
    with pytest.raises(DraftforgeError, match="line 1.*line 2"):
        load_prompts(str(path))


def test_text_file_lines_or_blocks(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("alpha\nbeta\n\n")
    assert [p.text for p in load_prompts(str(lines))] == ["alpha", "beta"]
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("def f():\n    pass\n\nsecond block\nline two\n")
    got = load_prompts(str(blocks), num_prompts=5)
    assert [p.text for p in got] == ["def f():\n    pass", "second block\nline two"]
    assert got[0].category == "text" and not got[0].chat


def test_unknown_source_and_bad_count():
    with pytest.raises(DraftforgeError, match="neither a built-in set"):
        load_prompts("no-such-set")
    with pytest.raises(DraftforgeError, match="num-prompts"):
        load_prompts("humaneval", 0)


def test_encode_applies_chat_template_only_to_chat_prompts():
    class Tok:
        chat_template = "x"

        def apply_chat_template(self, messages, **kwargs):
            assert kwargs["add_generation_prompt"] and messages[0]["role"] == "user"
            return {"input_ids": [1, 2, 3]}

        def __call__(self, text):
            return {"input_ids": [9] * len(text)}

    chat, raw = load_prompts("chat-mini", 1)[0], load_prompts("humaneval", 1)[0]
    assert encode(chat, Tok()) == [1, 2, 3]
    assert encode(raw, Tok()) == [9] * len(raw.text)
