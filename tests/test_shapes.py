from __future__ import annotations

import pytest
import torch
import transformers

from draftforge.catalog import list_targets
from draftforge.errors import DraftforgeError
from draftforge.shapes import ModelShape


def _real_param_count(shape: ModelShape) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(shape.to_hf_config())
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("target", list_targets(), ids=lambda t: t.name)
def test_catalog_param_count_equals_instantiated_model(target):
    """param_count() must equal the parameters of the real HF model (built on the meta device)."""
    assert target.shape.param_count() == _real_param_count(target.shape)


@pytest.mark.parametrize("target", list_targets(), ids=lambda t: t.name)
def test_catalog_param_count_matches_published(target):
    assert target.published_params is not None
    assert target.shape.param_count() == pytest.approx(target.published_params, rel=0.01)


@pytest.mark.parametrize(
    "shape",
    [
        ModelShape(2, 64, 4, 2, 128, 256, family="llama", tie_embeddings=True),
        ModelShape(3, 64, 4, 4, 96, 200, family="qwen2"),
        ModelShape(1, 32, 2, 1, 64, 100, family="mistral"),
        ModelShape(2, 48, 4, 4, 192, 128, family="opt", tie_embeddings=True, max_positions=64),
        ModelShape(2, 64, 4, 4, 256, 128, family="opt", tie_embeddings=True, max_positions=64, embed_dim=32),
    ],
    ids=lambda s: f"{s.family}-{s.describe()}",
)
def test_tiny_shapes_instantiate_and_run(shape):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(shape.to_hf_config())
    assert sum(p.numel() for p in model.parameters()) == shape.param_count()
    out = model(torch.randint(0, shape.vocab_size, (1, 5)))
    assert out.logits.shape == (1, 5, shape.vocab_size)
    assert ModelShape.from_hf_config(model.config) == shape


def test_hand_computed_counts():
    # 1 layer, hidden 8, 2 heads (head_dim 4), 1 kv head, intermediate 16, vocab 10, untied llama:
    # attention q 64 + k 32 + v 32 + o 64 = 192; mlp 3*8*16 = 384; norms 16 -> layer 592
    # embeddings 80, final norm 8, lm head 80 -> 760.
    s = ModelShape(1, 8, 2, 1, 16, 10)
    assert s.layer_params() == 592
    assert s.param_count() == 760
    assert s.kv_bytes_per_token("bf16") == 2 * 1 * 4 * 2
    assert s.weight_bytes("fp32") == 760 * 4
    # FLOPs per token at context 3: 2*(192+384) + 4*3*8 per layer, plus 2*10*8 head.
    assert s.flops_per_token(context=3) == 2 * 576 + 96 + 160


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(num_heads=3), "must divide hidden_size"),
        (dict(num_kv_heads=3), "must divide num_heads"),
        (dict(num_layers=0), "num_layers must be a positive integer"),
        (dict(family="gpt2"), "family must be one of"),
    ],
)
def test_invalid_shapes_are_refused(kwargs, fragment):
    base = dict(
        num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128, vocab_size=100
    )
    base.update(kwargs)
    with pytest.raises(DraftforgeError, match=fragment):
        ModelShape(**base)


def test_all_problems_reported_together():
    with pytest.raises(DraftforgeError) as info:
        ModelShape(2, 64, 5, 3, 128, 100)
    assert "must divide hidden_size" in str(info.value) and "must divide num_heads" in str(info.value)


def test_dict_round_trip_and_unknown_keys():
    s = ModelShape(5, 4096, 32, 32, 11008, 32000)
    assert ModelShape.from_dict(s.to_dict()) == s
    with pytest.raises(DraftforgeError, match="unknown model shape keys: bogus"):
        ModelShape.from_dict({**s.to_dict(), "bogus": 1})
