"""Knowledge distillation of a draft from its target (`draftforge distill RECIPE`).

Modules, in the order a run uses them:
- `recipe`: the typed YAML recipe (`load_recipe`, `Recipe`) and `render_search_recipe` for search;
- `setup`: run folder, preflight checks, teacher + tokenizer, vocabulary check, student construction;
- `data`: records -> token ids + loss mask -> teacher regeneration -> packed blocks, deterministic batches;
- `init`: student initialisation (random, layer subsets, Minitron-style width pruning);
- `losses`: pure KD losses (forward/reverse KL, JSD(β), TV, CE) and chunked mixtures;
- `engine`: process group, DeepSpeed configs and engines;
- `train`: `run(recipe)`, the training loop read top to bottom; `python -m draftforge.distill.train`
  is the per-process entry point for torchrun/deepspeed launches;
- `runstate`: checkpoints, metrics log, progress bars;
- `export`: the transformers folder + draftforge.json (draftforge.draft/1);
- `bench`: trainer vs plain-loop throughput (scripts/bench_distill.py, scripts/gpu_distill.py).

Nothing heavy is imported here, so `from draftforge.distill.recipe import ...` stays cheap.
"""
