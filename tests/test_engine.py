"""Speculative decoding engine: losslessness (greedy equality, sampling distribution) and exact τ."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from draftforge.errors import DraftforgeError
from draftforge.evaluate.engine import (
    SamplingConfig,
    accept_sampling,
    acceptance_counts,
    check_compatible,
    hf_assisted_generate,
    hf_greedy_generate,
    probabilities,
    speculative_generate,
    target_generate,
)


# ---- models -------------------------------------------------------------------------------------
def tiny_llama(seed: int, layers: int = 2, vocab: int = 64, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    return LlamaForCausalLM(config).eval()


def perturbed(model: LlamaForCausalLM, scale: float, seed: int) -> LlamaForCausalLM:
    """A copy of `model` with Gaussian noise on every weight: a draft that agrees only partly."""
    other = LlamaForCausalLM(model.config).eval()
    other.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std().clamp_min(1e-3))
    return other


class TableLM(torch.nn.Module):
    """A stub causal LM whose next-token logits depend only on the current token: logits = table[token].

    It keeps a real DynamicCache (one dummy layer) so the engine's cache bookkeeping and rollback are
    exercised exactly as with a transformer.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        vocab = table.shape[0]
        self.config = LlamaConfig(
            vocab_size=vocab, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1
        )
        self.table = torch.nn.Parameter(table.float(), requires_grad=False)
        self.calls: list[int] = []  # tokens fed per forward

    def forward(self, input_ids, cache=None, use_cache=True, logits_to_keep=0, **_):
        t = input_ids.shape[1]
        self.calls.append(t)
        if cache is not None:
            dummy = torch.zeros(1, 1, t, 1)
            cache.update(dummy, dummy, 0)
        logits = self.table[input_ids]  # (1, T, V)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits)


def successor_table(vocab: int, wrong_when=lambda nxt: False) -> torch.Tensor:
    """Deterministic table t -> t+1 (mod vocab); where wrong_when(t+1), t -> t+2 instead."""
    table = torch.full((vocab, vocab), -10.0)
    for t in range(vocab):
        nxt = (t + 1) % vocab
        table[t, (t + 2) % vocab if wrong_when(nxt) else nxt] = 10.0
    return table


# ---- exact τ with stubs -------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [1, 3, 4])
def test_always_accepted_gives_tau_gamma_plus_one(gamma):
    target = TableLM(successor_table(32))
    draft = TableLM(successor_table(32))
    k = 5
    res = speculative_generate(target, draft, [0, 1], gamma, max_new_tokens=k * (gamma + 1))
    assert res.tokens == [(2 + i) % 32 for i in range(k * (gamma + 1))]
    assert res.accepted == [gamma] * k and res.tau == gamma + 1
    # after a fully accepted round the draft is fed 2 tokens (the last draft token and the bonus)
    assert draft.calls[1:] == ([1] + [1] * (gamma - 1)) + ([2] + [1] * (gamma - 1)) * (k - 1)
    stats = acceptance_counts([res], gamma)
    assert stats["alpha"] == 1.0 and stats["per_position"] == [1.0] * gamma


@pytest.mark.parametrize("gamma", [1, 4])
def test_never_accepted_gives_tau_one(gamma):
    target = TableLM(successor_table(32))
    draft = TableLM(successor_table(32, wrong_when=lambda nxt: True))
    res = speculative_generate(target, draft, [0, 1], gamma, max_new_tokens=12)
    assert res.tokens == [(2 + i) % 32 for i in range(12)]
    assert res.tau == 1.0 and res.accepted == [0] * 12
    assert acceptance_counts([res], gamma)["alpha"] == 0.0


def test_partial_acceptance_exact_pattern():
    # the draft is wrong exactly when it proposes an even token; the target counts up by one.
    target = TableLM(successor_table(64))
    draft = TableLM(successor_table(64, wrong_when=lambda nxt: nxt % 2 == 0))
    # pending 1 (odd): the draft proposes 3 for 2 -> 0 accepted, the target gives 2. From then on the
    # pending token is even: the odd successor is accepted, the even one after it rejected -> 2 tokens.
    res = speculative_generate(target, draft, [0, 1], 3, max_new_tokens=1 + 2 * 6)
    assert res.tokens == list(range(2, 15))
    assert res.accepted == [0] + [1] * 6
    assert res.tau == pytest.approx(13 / 7)
    # the last round has 2 tokens left to produce, so it drafts 1 and has it accepted
    assert res.drafted == [3] * 6 + [1]
    stats = acceptance_counts([res], 3)
    assert stats["alpha"] == pytest.approx(6 / 12)  # 6 accepted of 6 + 6 rejected checks
    assert stats["per_position"][:2] == [pytest.approx(6 / 7), 0.0]
    assert stats["per_position"][2] != stats["per_position"][2]  # never reached: NaN


def test_last_round_drafts_only_what_is_left():
    target = TableLM(successor_table(32))
    draft = TableLM(successor_table(32))
    res = speculative_generate(target, draft, [0, 1], 4, max_new_tokens=7)
    assert res.drafted == [4, 1] and res.accepted == [4, 1] and len(res.tokens) == 7


def test_eos_stops_and_is_kept():
    target = TableLM(successor_table(32))
    draft = TableLM(successor_table(32))
    res = speculative_generate(target, draft, [0, 1], 4, max_new_tokens=30, eos_token_id=6)
    assert res.tokens == [2, 3, 4, 5, 6] and res.stopped == "eos"


def test_vocab_mismatch_is_refused():
    with pytest.raises(DraftforgeError, match="vocabulary"):
        speculative_generate(tiny_llama(0, vocab=64), tiny_llama(1, vocab=48), [1, 2], 2, 4)

    class Tok:
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

    model = tiny_llama(0)
    with pytest.raises(DraftforgeError, match="tokenizer"):
        check_compatible(model, model, Tok({"a": 0, "b": 1}), Tok({"a": 1, "b": 0}))


# ---- greedy losslessness ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pair():
    target = tiny_llama(0, layers=2)
    return target, perturbed(target, 0.35, seed=1)


TINY_PROMPTS = ([1, 5, 7, 9, 11], [3], list(range(20, 50)))


@pytest.fixture(scope="module")
def tiny_references(tiny_pair):
    return [hf_greedy_generate(tiny_pair[0], prompt, 40) for prompt in TINY_PROMPTS]


@pytest.mark.parametrize("gamma", [1, 2, 3, 5, 8])
def test_greedy_equals_target_greedy_tiny(tiny_pair, tiny_references, gamma):
    target, draft = tiny_pair
    rates = []
    for prompt, ref in zip(TINY_PROMPTS, tiny_references, strict=True):
        res = speculative_generate(target, draft, prompt, gamma, 40)
        assert res.tokens == ref
        rates.append(res.tau)
    # the pair must exercise both acceptance and rejection, or the test proves little
    stats_rounds = sum(rates) / len(rates)
    assert 1.0 < stats_rounds < gamma + 1


def test_target_only_and_self_draft_equal_greedy(tiny_pair):
    target, _ = tiny_pair
    prompt = [4, 8, 15, 16, 23, 42]
    ref = hf_greedy_generate(target, prompt, 40)
    base = target_generate(target, prompt, 40)
    assert base.tokens == ref and base.tau == 1.0 and base.iterations == 40
    self_draft = speculative_generate(target, target, prompt, 4, 40)
    assert self_draft.tokens == ref and self_draft.accepted == [4] * 8


def test_hf_assisted_generation_gives_the_same_tokens(tiny_pair):
    target, draft = tiny_pair
    prompt = [1, 5, 7, 9, 11]
    ours = speculative_generate(target, draft, prompt, 3, 32)
    theirs, seconds = hf_assisted_generate(target, draft, prompt, 3, 32)
    assert theirs == ours.tokens and seconds > 0


@pytest.mark.slow
def test_greedy_equals_target_greedy_smollm2(smollm2_path):
    from draftforge.assets import load_model_and_tokenizer
    from draftforge.evaluate.truncate import truncated_draft

    target, tok = load_model_and_tokenizer(str(smollm2_path))
    draft = truncated_draft(target, 24)  # a shorter cut of SmolLM2 almost never agrees with it
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Write a Python function that reverses a list."}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    ref = hf_greedy_generate(target, prompt, 24, eos_token_id=tok.eos_token_id)
    for gamma in (1, 3, 6):
        res = speculative_generate(target, draft, prompt, gamma, 24, eos_token_id=tok.eos_token_id)
        assert res.tokens == ref, f"gamma={gamma}"
        assert sum(res.accepted) > 0 and min(res.accepted) < gamma


# ---- sampling follows the target distribution ---------------------------------------------------
def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    from scipy.stats import chisquare

    n = int(counts.sum())
    expected = probs.double() * n
    keep = expected >= 5  # pool sparse cells into one, as the chi-square approximation needs
    obs = torch.cat([counts[keep].double(), counts[~keep].double().sum().reshape(1)])
    exp = torch.cat([expected[keep], expected[~keep].sum().reshape(1)])
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    exp = exp * obs.sum() / exp.sum()
    return float(chisquare(obs.numpy(), exp.numpy()).pvalue)


def test_rejection_rule_recovers_target_distribution():
    gen = torch.Generator().manual_seed(0)
    vocab, gamma, trials = 6, 2, 20000
    p = torch.softmax(torch.randn(gamma + 1, vocab, generator=gen) * 1.5, -1)
    q = torch.softmax(torch.randn(gamma, vocab, generator=gen) * 1.5, -1)
    first = torch.zeros(vocab)
    accepted_first = 0
    for _ in range(trials):
        drafted = torch.multinomial(q, 1, generator=gen)[:, 0]
        n, nxt = accept_sampling(drafted, q, p, gen)
        token = drafted[0] if n >= 1 else nxt  # the first output token
        first[token] += 1
        accepted_first += int(n >= 1)
    assert _chi_square_p(first, p[0]) > 1e-3
    # the test has power: the draft's own distribution is clearly rejected
    assert _chi_square_p(first, q[0]) < 1e-6
    alpha = torch.minimum(p[0], q[0]).sum().item()
    assert accepted_first / trials == pytest.approx(alpha, abs=0.02)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.8)])
def test_speculative_sampling_follows_target_joint_distribution(temperature, top_p):
    vocab = 8
    target = tiny_llama(0, layers=1, vocab=vocab, hidden=16)
    draft = tiny_llama(5, layers=1, vocab=vocab, hidden=16)
    with torch.no_grad():  # sharpen both so that p and q differ clearly
        target.lm_head.weight.mul_(12.0)
        draft.lm_head.weight.mul_(12.0)
    prompt = [3]  # one token: no prefill, two forwards per sample
    sampling = SamplingConfig(temperature=temperature, top_p=top_p)
    # exact joint target distribution of the first two tokens: p(a) p(b | a)
    with torch.no_grad():
        first = probabilities(target(torch.tensor([prompt])).logits[0, -1:], temperature, top_p)[0]
        second = torch.stack(
            [
                probabilities(target(torch.tensor([prompt + [a]])).logits[0, -1:], temperature, top_p)[0]
                for a in range(vocab)
            ]
        )
    joint = (first[:, None] * second).reshape(-1)
    draft_first = probabilities(draft(torch.tensor([prompt])).logits[0, -1:].detach(), temperature, top_p)[0]
    assert (first - draft_first).abs().sum() > 0.3  # the draft is really different
    gen = torch.Generator().manual_seed(123)
    counts = torch.zeros(vocab * vocab)
    accepted = 0
    n_samples = 1000
    for _ in range(n_samples):
        res = speculative_generate(target, draft, prompt, 2, 2, sampling, generator=gen, timing=False)
        counts[res.tokens[0] * vocab + res.tokens[1]] += 1
        accepted += res.accepted[0]
    assert _chi_square_p(counts, joint) > 1e-3
    assert 0 < accepted < n_samples  # both branches (accept and residual resampling) were taken
