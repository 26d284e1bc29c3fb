"""Every shipped recipe goes through the real loader; malformed recipes report every problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from draftforge.catalog import get_target
from draftforge.distill.recipe import (
    Recipe,
    apply_overrides,
    load_recipe,
    recipe_from_dict,
    render_search_recipe,
)
from draftforge.errors import DraftforgeError
from draftforge.files import write_json

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ALL_RECIPES = sorted(RECIPES.rglob("*.yaml"))


def test_recipes_exist():
    assert len(ALL_RECIPES) >= 4
    names = {p.name for p in ALL_RECIPES}
    assert {"llama.yaml", "opt.yaml", "smollm2-cpu.yaml", "tiny-smoke.yaml"} <= names


@pytest.mark.parametrize("path", ALL_RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    shape = recipe.draft_shape()
    assert shape.num_layers >= 1
    # the resolved recipe round-trips through the loader
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml()), base_dir=recipe.base_dir)
    assert again.sha256() == recipe.sha256()


def _minimal() -> dict:
    return {
        "target": "smollm2-135m",
        "draft": {"shape": get_target("smollm2-135m").shape.replace(num_layers=2).to_dict()},
        "data": {"source": "x.jsonl"},
        "output": {"dir": "runs/x"},
    }


def test_malformed_recipe_reports_every_problem_naming_keys():
    raw = _minimal()
    raw["data"]["seq_len"] = 2
    raw["data"]["colour"] = "red"
    raw["optim"] = {"lr": -1, "max_steps": 0}
    raw["loss"] = {"terms": {"forward_kl": 1.0, "bogus_loss": 1.0}}
    raw["unknown_section"] = {}
    with pytest.raises(DraftforgeError) as info:
        recipe_from_dict(raw)
    msg = str(info.value)
    for key in (
        "data.seq_len",
        "data.colour: unknown key",
        "optim.lr",
        "optim.max_steps",
        "loss.terms.bogus_loss",
        "unknown_section: unknown key",
    ):
        assert key in msg, (key, msg)
    assert "6 problem(s)" in msg


def test_vocab_mismatch_is_a_clear_error():
    raw = _minimal()
    raw["draft"]["shape"]["vocab_size"] = 32000
    with pytest.raises(DraftforgeError, match="vocab_size 32000 differs from the target's 49152"):
        recipe_from_dict(raw)


def test_layer_copy_needs_same_width():
    raw = _minimal()
    raw["draft"]["shape"].update(hidden_size=256, num_heads=4, num_kv_heads=2)
    with pytest.raises(DraftforgeError, match="init.method prune"):
        recipe_from_dict(raw)
    raw["init"] = {"method": "prune"}
    assert recipe_from_dict(raw).init.method == "prune"


def test_overrides_apply_and_are_validated(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_minimal()))
    recipe = load_recipe(path, ["optim.lr=0.01", "deepspeed.zero_stage=2", "loss.terms={tv: 1.0}"])
    assert recipe.optim.lr == 0.01 and recipe.deepspeed.zero_stage == 2 and recipe.loss.terms == {"tv": 1.0}
    with pytest.raises(DraftforgeError, match="deepspeed.zero_stage"):
        load_recipe(path, ["deepspeed.zero_stage=7"])
    with pytest.raises(DraftforgeError, match="key.sub=value"):
        apply_overrides({}, ["novalue"])


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(DraftforgeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(DraftforgeError, match="not valid YAML"):
        load_recipe(bad)


def _search_file(folder: Path, shape) -> Path:
    cand = {"rank": 1, "shape": shape.to_dict(), "params": shape.param_count(), "alpha": 0.7}
    cand2 = {**cand, "rank": 2, "shape": shape.replace(num_layers=3).to_dict()}
    return write_json(folder / "search.json", {"schema": "draftforge.search/1", "candidates": [cand, cand2]})


@pytest.mark.parametrize("gpu", [None, "a100", "h100"])
def test_render_search_recipe_loads_through_the_loader(tmp_path, gpu):
    shape = get_target("llama-65b").shape.replace(num_layers=5)
    search = _search_file(tmp_path, shape)
    text = render_search_recipe("llama-65b", shape, str(search), 1, gpu)
    (tmp_path / "recipe.yaml").write_text(text)
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.draft_shape() == shape
    assert recipe.target == "llama-65b"
    if gpu:
        assert recipe.deepspeed.precision == "bf16" and recipe.deepspeed.zero_stage == 3
        assert recipe.deepspeed.teacher_zero3
    # rank 2 is a different shape: the explicit shape and the search file must agree
    (tmp_path / "r2.yaml").write_text(text.replace("rank: 1", "rank: 2"))
    with pytest.raises(DraftforgeError, match="disagrees"):
        load_recipe(tmp_path / "r2.yaml").draft_shape()


def test_render_search_recipe_without_search_file_picks_the_init():
    smol = get_target("smollm2-135m").shape
    narrow = smol.replace(num_layers=2, hidden_size=384, num_heads=6, num_kv_heads=2, intermediate_size=1024)
    recipe = recipe_from_dict(yaml.safe_load(render_search_recipe("smollm2-135m", narrow, None, 1, None)))
    assert recipe.init.method == "prune" and recipe.deepspeed.device == "cpu"
    assert recipe.data.source == "pydoc:topics"  # a CPU recipe runs offline as written
    wide = smol.replace(num_layers=2, hidden_size=768, num_heads=12, num_kv_heads=4)
    assert recipe_from_dict(
        yaml.safe_load(render_search_recipe("smollm2-135m", wide, None, 1, None))
    ).init.method == ("random")
    same = smol.replace(num_layers=3)
    assert recipe_from_dict(
        yaml.safe_load(render_search_recipe("smollm2-135m", same, None, 1, None))
    ).init.method == ("layers")
    with pytest.raises(DraftforgeError, match="vocab_size"):
        render_search_recipe("llama-65b", wide, None, 1, None)


def test_draft_from_search_rank(tmp_path):
    shape = get_target("smollm2-135m").shape.replace(num_layers=4)
    _search_file(tmp_path, shape)
    raw = _minimal()
    raw["draft"] = {"search": "search.json", "rank": 2}
    recipe = recipe_from_dict(raw, base_dir=tmp_path)
    assert recipe.draft_shape().num_layers == 3
    raw["draft"]["rank"] = 9
    with pytest.raises(DraftforgeError, match="no candidate of rank 9"):
        recipe_from_dict(raw, base_dir=tmp_path).draft_shape()
