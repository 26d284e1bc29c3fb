"""Speculative decoding engine: a draft proposes γ tokens, the target verifies them in one forward.

Batch size 1, any pair of transformers causal LMs over the same vocabulary. Both models keep a KV
cache across iterations; a rejection rolls the caches back (`DynamicCache.crop`) instead of
re-running the accepted prefix. The hot path is a few small functions in the manner of gpt-fast's
`generate.py`: `prefill`, `draft` (γ single-token draft steps), `verify` (one target forward over
γ+1 tokens), `accept_greedy` / `accept_sampling` (vectorised, no per-token `.item()`). There is one
host synchronisation per iteration, to learn how many tokens were accepted.

Sampling follows Leviathan et al. 2023 (arXiv 2211.17192, Alg. 1) and Chen et al. 2023
(arXiv 2302.01318): accept draft token x with probability min(1, p(x)/q(x)); at the first
rejection sample from norm(max(0, p − q)); if all γ are accepted sample a bonus token from p. The
output then follows the target's distribution p exactly (after temperature and top-p, applied to
both models alike). With temperature 0 the check is greedy: accept while the draft token equals the
target's argmax, and the output equals the target's own greedy output token for token.

State between iterations: `seq` holds prompt + generated ids; the target's cache holds all of `seq`
but its last token ("pending"), which is the first input of the next verification. The draft's cache
holds a prefix of `seq`; each draft round first feeds it whatever of `seq` it has not seen (one
token, or two after a fully accepted round).

The target-only baseline is the same loop with γ = 0 (one target forward per token, same cache
handling, same sampling code), so speedup is a fair ratio.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from draftforge.errors import DraftforgeError


# ---- results ------------------------------------------------------------------------------------
@dataclass
class DecodeResult:
    """What one prompt's decoding produced and how.

    `accepted[i]` is the number of draft tokens accepted in iteration i (0..`drafted[i]`), and
    `drafted[i]` the number proposed (γ, fewer in a last iteration cut by max_new_tokens; 0 for the
    target-only baseline). Each iteration yields accepted[i] + 1 tokens before truncation at eos or
    max_new_tokens. Times are wall-clock seconds (synchronised on CUDA) spent in draft forwards and in
    target forwards; `total_time_s` spans the whole call including prefill.
    """

    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    drafted: list[int] = field(default_factory=list)
    prefill_time_s: float = 0.0
    draft_time_s: float = 0.0
    verify_time_s: float = 0.0
    total_time_s: float = 0.0
    stopped: str = "length"  # "length" or "eos"

    @property
    def iterations(self) -> int:
        return len(self.accepted)

    @property
    def tau(self) -> float:
        """Mean tokens produced per iteration (accepted + the target's own token), 1..γ+1."""
        return (
            (sum(self.accepted) + len(self.accepted)) / len(self.accepted) if self.accepted else float("nan")
        )


def acceptance_counts(results: Sequence[DecodeResult], gamma: int) -> dict[str, Any]:
    """Pooled acceptance statistics of several decodes.

    alpha: per-token acceptance, Σ accepted / Σ checked, where a round checks its accepted tokens plus
    the rejected one (if any); this is the maximum-likelihood α of the geometric acceptance model.
    per_position: for draft position k = 1..γ, P(token k accepted | tokens < k accepted), over the
    rounds that proposed at least k tokens (NaN where no round reached position k).
    tau: mean tokens per iteration over all rounds.
    """
    reached = [0] * gamma  # rounds that checked position k
    passed = [0] * gamma  # rounds that accepted position k
    accepted_total = checked_total = tokens = iterations = 0
    for res in results:
        for n, g in zip(res.accepted, res.drafted, strict=True):
            iterations += 1
            tokens += n + 1
            accepted_total += n
            checked_total += n + (1 if n < g else 0)
            for k in range(min(g, n + 1)):
                reached[k] += 1
                passed[k] += 1 if k < n else 0
    per_position = [p / r if r else float("nan") for p, r in zip(passed, reached, strict=True)]
    return {
        "alpha": accepted_total / checked_total if checked_total else float("nan"),
        "tau": tokens / iterations if iterations else float("nan"),
        "per_position": per_position,
        "iterations": iterations,
    }


# ---- model plumbing -----------------------------------------------------------------------------
def check_compatible(
    draft: Any, target: Any, draft_tokenizer: Any = None, target_tokenizer: Any = None
) -> None:
    """Refuse a draft/target pair that does not share a vocabulary (and tokenizer, when given)."""
    dv, tv = _vocab_size(draft), _vocab_size(target)
    if dv != tv:
        raise DraftforgeError(
            f"the draft's vocabulary ({dv} tokens) differs from the target's ({tv}); speculative decoding "
            "needs a draft that shares the target's tokenizer"
        )
    both = draft_tokenizer is not None and target_tokenizer is not None
    if both and draft_tokenizer.get_vocab() != target_tokenizer.get_vocab():
        raise DraftforgeError(
            "the draft's tokenizer differs from the target's (same size, different tokens); use a draft "
            "trained with the target's tokenizer"
        )


def _vocab_size(model: Any) -> int:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.vocab_size)


class _Runner:
    """Calls one causal LM with a KV cache; hides the transformers version's keyword names."""

    def __init__(self, model: Any) -> None:
        from transformers import DynamicCache

        self.model = model
        params = inspect.signature(model.forward).parameters
        # transformers 5.24 names the cache `cache`; older 5.x releases call it `past_key_values`.
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.keeps_logits = "logits_to_keep" in params
        self.cache = DynamicCache(config=model.config)
        self.length = 0  # tokens in the cache

    def forward(self, ids: torch.Tensor, keep: int = 0) -> torch.Tensor:
        """Feed ids (1, T); returns logits (T', V) for the last `keep` positions (all when 0)."""
        kwargs: dict[str, Any] = {self.cache_kw: self.cache, "use_cache": True}
        if self.keeps_logits and keep:
            kwargs["logits_to_keep"] = keep
        out = self.model(input_ids=ids, **kwargs)
        self.length += ids.shape[1]
        logits = out.logits[0]  # (T, V)
        return logits[-keep:] if keep else logits

    def rollback(self, length: int) -> None:
        """Drop cached tokens beyond `length` (a negative crop removes that many tokens)."""
        if length < self.length:
            self.cache.crop(length - self.length)
            self.length = length


# ---- sampling -----------------------------------------------------------------------------------
def probabilities(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Softmax of logits / temperature restricted to the top-p nucleus, renormalised. (N, V) float32."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # keep a token while the mass before it is below top_p (the most likely token always stays)
    drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    probs = probs.masked_fill(drop, 0.0)
    return probs / probs.sum(-1, keepdim=True)


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of probs (N, V) -> (N,), without a host sync (exponential race, as gpt-fast)."""
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return torch.argmax(probs / race, dim=-1)


def accept_greedy(drafted: torch.Tensor, target_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy check. drafted (γ,), target_logits (γ+1, V) -> (n accepted (), next token ()).

    n is the length of the longest prefix of `drafted` equal to the target's argmax; the next token
    is the target's argmax after that prefix (the correction, or the bonus when n = γ).
    """
    best = target_logits.argmax(-1)  # (γ+1,)
    gamma = drafted.shape[0]
    mismatch = torch.cat([drafted != best[:gamma], torch.ones(1, dtype=torch.bool, device=best.device)])
    n = mismatch.int().argmax()  # first mismatch; γ when all match
    return n, best[n]


def accept_sampling(
    drafted: torch.Tensor, q: torch.Tensor, p: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rejection-sampling check (Leviathan et al. 2023, Alg. 1).

    drafted (γ,) tokens drawn from q (γ, V); p (γ+1, V) the target's distributions at the same
    positions plus the bonus position. Returns (n accepted (), next token ()), where the next token
    is drawn from norm(max(0, p_n − q_n)) after a rejection, or from p_γ when all γ are accepted.
    """
    gamma = drafted.shape[0]
    idx = torch.arange(gamma, device=p.device)
    p_x = p[idx, drafted]  # (γ,)
    q_x = q[idx, drafted]  # (γ,)
    u = torch.rand(gamma, generator=generator, device=p.device)
    rejected = torch.cat([u * q_x > p_x, torch.ones(1, dtype=torch.bool, device=p.device)])  # u < p/q accepts
    n = rejected.int().argmax()  # first rejection; γ when none
    q_pad = torch.cat([q, torch.zeros_like(p[:1])])  # (γ+1, V): the bonus row has q = 0, so residual = p
    residual = (p[n] - q_pad[n]).clamp_min(0.0)
    mass = residual.sum()
    # a rejection implies p(x) < q(x), hence mass > 0; the guard only covers float round-off
    residual = torch.where(mass > 0, residual / mass.clamp_min(1e-30), p[n])
    return n, sample(residual[None], generator)[0]


# ---- the loop -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 means greedy; top_p 1.0 means no nucleus cut."""

    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not self.temperature >= 0.0:
            problems.append(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if problems:
            raise DraftforgeError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prefill(runner: _Runner, prompt: torch.Tensor) -> None:
    """Fill a cache with all prompt tokens but the last (which the first round feeds)."""
    if prompt.shape[1] > 1:
        runner.forward(prompt[:, :-1], keep=1)


def draft(
    runner: _Runner,
    unseen: torch.Tensor,
    gamma: int,
    sampling: SamplingConfig,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """γ draft steps. unseen (1, T) = tokens of seq the draft cache lacks (T = 1 or 2).

    Returns drafted tokens (γ,) and, when sampling, their distributions q (γ, V). The last drafted
    token is not fed to the draft (the next round feeds it if it is accepted).
    """
    tokens, dists = [], []
    ids = unseen
    for _ in range(gamma):
        logits = runner.forward(ids, keep=1)  # (1, V)
        if sampling.greedy:
            token = logits.argmax(-1)  # (1,)
        else:
            q = probabilities(logits, sampling.temperature, sampling.top_p)
            token = sample(q, generator)
            dists.append(q)
        tokens.append(token)
        ids = token[None]  # (1, 1)
    drafted = torch.cat(tokens) if tokens else unseen.new_empty(0)
    return drafted, (torch.cat(dists) if dists else None)


def verify(runner: _Runner, pending: torch.Tensor, drafted: torch.Tensor) -> torch.Tensor:
    """One target forward over [pending, drafted...] -> logits (γ+1, V)."""
    return runner.forward(torch.cat([pending, drafted])[None], keep=0)


@torch.inference_mode()
def speculative_generate(
    target: Any,
    draft_model: Any | None,
    prompt_ids: Sequence[int] | torch.Tensor,
    gamma: int,
    max_new_tokens: int,
    sampling: SamplingConfig = SamplingConfig(),
    eos_token_id: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    timing: bool = True,
) -> DecodeResult:
    """Decode one prompt with speculative decoding (γ >= 1) or target-only (γ = 0, draft may be None).

    prompt_ids: the prompt's token ids (1-D). Generation stops after max_new_tokens tokens or at an
    eos token (kept in the output). In a round with fewer than γ+1 tokens left to produce, only
    (left − 1) tokens are drafted, as transformers' assisted generation does.
    """
    if gamma < 0 or max_new_tokens < 1:
        raise ValueError(f"need gamma >= 0 and max_new_tokens >= 1, got {gamma}, {max_new_tokens}")
    if gamma > 0:
        if draft_model is None:
            raise ValueError("gamma > 0 needs a draft model")
        check_compatible(draft_model, target)
    device = next(target.parameters()).device
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)  # (1, P)
    if prompt.shape[1] == 0:
        raise DraftforgeError("the prompt is empty; give at least one token")
    eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
    clock = time.perf_counter
    result = DecodeResult(prompt_tokens=prompt.shape[1])
    start = clock()

    tgt = _Runner(target)
    prefill(tgt, prompt)
    dft = None
    if gamma > 0:
        dft = _Runner(draft_model)
        prefill(dft, prompt)
    if timing:
        _sync(device)
    result.prefill_time_s = clock() - start

    seq = prompt[0].tolist()
    generated: list[int] = []
    while len(generated) < max_new_tokens:
        g = min(gamma, max_new_tokens - len(generated) - 1)
        t0 = clock()
        if g > 0:
            unseen = torch.tensor([seq[dft.length :]], dtype=torch.long, device=device)
            drafted, q = draft(dft, unseen, g, sampling, generator)
        else:
            drafted, q = prompt.new_empty(0), None
        if timing:
            _sync(device)
        t1 = clock()
        pending = prompt.new_tensor([seq[-1]])
        logits = verify(tgt, pending, drafted)  # (g+1, V)
        if sampling.greedy:
            n, nxt = accept_greedy(drafted, logits)
        else:
            p = probabilities(logits, sampling.temperature, sampling.top_p)
            q = q if q is not None else p.new_empty(0, p.shape[-1])
            n, nxt = accept_sampling(drafted, q, p, generator)
        host = torch.cat([n.reshape(1), drafted, nxt.reshape(1)]).tolist()  # the one sync per round
        t2 = clock()
        n = host[0]
        new = host[1 : 1 + n] + [host[-1]]
        # roll back: the target keeps seq + accepted (the new token is pending); the draft keeps what
        # it has seen of seq + accepted
        base = len(seq)
        tgt.rollback(base + n)
        if dft is not None and g > 0:
            dft.rollback(min(dft.length, base + n))
        result.accepted.append(n)
        result.drafted.append(g)
        result.draft_time_s += t1 - t0
        result.verify_time_s += t2 - t1
        for token in new:
            generated.append(token)
            seq.append(token)
            if token in eos:
                result.stopped = "eos"
                break
            if len(generated) >= max_new_tokens:
                break
        if result.stopped == "eos":
            break
    result.tokens = generated
    result.total_time_s = clock() - start
    return result


def target_generate(
    target: Any,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig = SamplingConfig(),
    eos_token_id: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    timing: bool = True,
) -> DecodeResult:
    """Target-only autoregressive decoding: the same loop and cache handling with γ = 0."""
    return speculative_generate(
        target, None, prompt_ids, 0, max_new_tokens, sampling, eos_token_id, generator, timing
    )


# ---- transformers' own assisted generation ------------------------------------------------------
@torch.inference_mode()
def hf_assisted_generate(
    target: Any,
    draft_model: Any,
    prompt_ids: Sequence[int] | torch.Tensor,
    gamma: int,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
) -> tuple[list[int], float]:
    """Greedy `target.generate(assistant_model=draft)` with a constant γ; returns (new ids, seconds).

    The assistant's schedule is fixed to `constant` and its confidence threshold switched off so that
    every round drafts exactly γ tokens, as our engine does.
    """
    import copy

    device = next(target.parameters()).device
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)
    saved = draft_model.generation_config
    gen_config = copy.deepcopy(saved)
    gen_config.num_assistant_tokens = gamma
    gen_config.num_assistant_tokens_schedule = "constant"
    gen_config.assistant_confidence_threshold = 0.0
    draft_model.generation_config = gen_config
    pad = _pad_id(eos_token_id)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # assisted generation warns about its own internal config use
    try:
        _sync(device)
        start = time.perf_counter()
        out = target.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            assistant_model=draft_model,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=pad,
        )
        _sync(device)
        seconds = time.perf_counter() - start
    finally:
        draft_model.generation_config = saved
        hf_logging.set_verbosity(verbosity)
    return out[0, prompt.shape[1] :].tolist(), seconds


def _pad_id(eos_token_id: Any) -> int:
    """A pad id for `generate` (batch size 1, so only its presence matters): the (first) EOS id, or 0."""
    if isinstance(eos_token_id, int):
        return eos_token_id
    return list(eos_token_id)[0] if eos_token_id else 0


def hf_greedy_generate(
    target: Any, prompt_ids: Sequence[int] | torch.Tensor, max_new_tokens: int, eos_token_id: Any = None
) -> list[int]:
    """transformers' plain greedy `generate` (the reference output for equality tests)."""
    device = next(target.parameters()).device
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)
    pad = _pad_id(eos_token_id)
    with torch.inference_mode():
        out = target.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=pad,
        )
    return out[0, prompt.shape[1] :].tolist()
