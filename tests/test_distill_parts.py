"""Pure pieces of the distiller: schedule, DeepSpeed config, batch order, packing."""

from __future__ import annotations

import math

import pytest
import torch

from draftforge.distill.data import BatchSampler, Example, pack
from draftforge.distill.engine import deepspeed_config, lr_lambda
from draftforge.distill.recipe import recipe_from_dict
from draftforge.errors import DraftforgeError


def _recipe(**sections):
    raw = {
        "target": "smollm2-135m",
        "draft": {
            "shape": {
                "num_layers": 2,
                "hidden_size": 576,
                "num_heads": 9,
                "num_kv_heads": 3,
                "intermediate_size": 1536,
                "vocab_size": 49152,
                "tie_embeddings": True,
            }
        },
        "data": {"source": "x.jsonl"},
        "output": {"dir": "runs/x"},
        **sections,
    }
    return recipe_from_dict(raw)


def test_warmup_then_cosine_to_min_ratio():
    f = lr_lambda(warmup_steps=4, max_steps=14, min_ratio=0.1)
    assert [round(f(s), 3) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


def test_deepspeed_config_follows_the_recipe():
    r = _recipe(
        optim={"micro_batch_size": 3, "grad_accum": 2, "grad_clip": 0.5},
        deepspeed={"zero_stage": 3, "precision": "bf16", "offload_optimizer": True, "offload_params": True},
    )
    cfg = deepspeed_config(r, world=4)
    assert cfg["train_batch_size"] == 24 and cfg["gradient_accumulation_steps"] == 2
    assert cfg["gradient_clipping"] == 0.5 and cfg["bf16"] == {"enabled": True}
    z = cfg["zero_optimization"]
    assert (
        z["stage"] == 3
        and z["offload_optimizer"]["device"] == "cpu"
        and z["offload_param"]["device"] == "cpu"
    )
    plain = deepspeed_config(_recipe(optim={"grad_clip": 0}), world=1)
    assert (
        "gradient_clipping" not in plain
        and "bf16" not in plain
        and plain["zero_optimization"] == {"stage": 0}
    )


def test_bf16_is_autocast_below_zero3_and_deepspeed_bf16_at_zero3():
    import torch

    from draftforge.distill.engine import autocast_dtype

    z2 = _recipe(deepspeed={"zero_stage": 2, "precision": "bf16"})
    assert autocast_dtype(z2) == torch.bfloat16 and "bf16" not in deepspeed_config(z2, world=1)
    z3 = _recipe(deepspeed={"zero_stage": 3, "precision": "bf16"})
    assert autocast_dtype(z3) is None and deepspeed_config(z3, world=1)["bf16"] == {"enabled": True}
    assert autocast_dtype(_recipe()) is None


def test_offload_needs_zero():
    with pytest.raises(DraftforgeError, match="offload_params needs zero_stage 3"):
        _recipe(deepspeed={"zero_stage": 2, "offload_params": True})
    with pytest.raises(DraftforgeError, match="offload_optimizer needs zero_stage"):
        _recipe(deepspeed={"offload_optimizer": True})


def test_batches_are_a_pure_function_of_step_and_ranks_split_the_single_rank_batch():
    one = BatchSampler(10, 4, seed=3)
    again = BatchSampler(10, 4, seed=3)
    assert torch.equal(one.indices(7), again.indices(7))  # no hidden state: resume sees the same batch
    r0, r1 = BatchSampler(10, 2, seed=3, rank=0, world=2), BatchSampler(10, 2, seed=3, rank=1, world=2)
    for step in range(6):
        assert torch.equal(torch.cat([r0.indices(step), r1.indices(step)]), one.indices(step))
    # every block is seen once per epoch
    seen = torch.cat([one.indices(s) for s in range(5)])  # 20 samples = 2 epochs of 10
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))


def test_pack_shifts_the_mask_to_prediction_positions():
    examples = [Example([5, 6, 7], [0, 1, 1]), Example([8, 9], [1, 1])]
    ids, mask = pack(examples, seq_len=3, eos_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 8, 9]]
    # position t counts when token t+1 is trained: 5->6 yes, 6->7 yes, last position of a block never
    assert mask.tolist() == [[True, True, False], [True, True, False]]
    with pytest.raises(DraftforgeError, match="fewer than one"):
        pack(examples, seq_len=100, eos_id=0)
