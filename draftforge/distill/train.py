"""The distillation recipe, top to bottom: `run(recipe)` trains a draft from its target with DeepSpeed.

    setup -> teacher + tokenizer -> data -> student init -> engines -> [resume] -> eval at start
      -> loop: batch -> loss step (teacher under no_grad, student forward, KD loss) -> backward -> step
         (log / eval / checkpoint at optimizer-step boundaries) -> export the draft folder

The same code runs as one gloo process on CPU and under `torchrun`/`deepspeed` on many GPUs or nodes:
    torchrun --nproc_per_node 8 -m draftforge.distill.train recipes/llama.yaml
    deepspeed --num_gpus 8 -m draftforge.distill.train recipes/llama.yaml   (hostfile for many nodes)
Every batch is a pure function of (seed, micro-step, rank) and checkpoints carry optimizer,
scheduler, RNG and data position, so `--resume` continues exactly where the last checkpoint was.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from draftforge.distill.data import BatchSampler, DistillData, prepare_data
from draftforge.distill.engine import (
    TORCH_DTYPES,
    Dist,
    autocast_dtype,
    setup_distributed,
    single_process_env,
    student_engine,
    teacher_engine,
)
from draftforge.distill.losses import IGNORE_INDEX, distill_loss, teacher_logprobs_from_topk, topk_teacher
from draftforge.distill.recipe import RandomTarget, Recipe
from draftforge.distill.runstate import (  # noqa: F401  (METRICS, CHECKPOINTS: re-exported for callers)
    CHECKPOINTS,
    METRICS,
    MetricsLog,
    NullProgress,
    RichProgress,
    TrainState,
    barrier,
    load_checkpoint,
    mean_over_ranks,
    peak_flops,
    save_checkpoint,
)
from draftforge.distill.setup import (  # noqa: F401  (check_vocab, load_teacher: public API)
    build_student,
    check_vocab,
    load_teacher,
    preflight,
    prepare_output,
    target_info,
)
from draftforge.errors import DraftforgeError

DRAFT = "draft"


@dataclass
class DistillResult:
    out_dir: Path
    draft_dir: Path
    steps: int
    tokens: int
    initial_metrics: dict[str, float]
    final_metrics: dict[str, float]
    tokens_per_s: float


# ---- the hot path --------------------------------------------------------------------------------
def labels_from_ids(ids: torch.Tensor) -> torch.Tensor:
    """Next-token labels aligned with the logits: labels[:, t] = ids[:, t+1]; the last is ignored."""
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, :-1] = ids[:, 1:]
    return labels


@torch.no_grad()
def teacher_logits(teacher, ids: torch.Tensor) -> torch.Tensor:
    return teacher(input_ids=ids).logits  # (B, T, V)


def loss_step(student, teacher, ids, mask, loss_cfg, t_logits=None) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch: teacher logits (no grad, or cached top-k), student logits, KD loss."""
    if t_logits is None and any(n != "ce" for n in loss_cfg.terms):
        t_logits = teacher_logits(teacher, ids)  # (B, T, V)
    s_logits = student(input_ids=ids).logits  # (B, T, V)
    loss, parts = distill_loss(
        s_logits,
        t_logits,
        loss_cfg.terms,
        mask=mask,
        labels=labels_from_ids(ids),
        temperature=loss_cfg.temperature,
        beta=loss_cfg.jsd_beta,
        chunk_tokens=loss_cfg.chunk_tokens,
    )
    # the (B, T, V) logits are the largest activations; drop our references before backward
    del s_logits, t_logits
    return loss, parts


@torch.no_grad()
def on_policy_batch(student, ids: torch.Tensor, cfg, seq_len: int, pad_id: int, synced: bool):
    """DistillSpec on-policy data: the student continues each block's prefix by sampling; the loss
    counts only the positions that predict the student's own tokens."""
    prompt = ids[:, : cfg.prompt_tokens]
    new = min(cfg.max_new_tokens, seq_len - cfg.prompt_tokens)
    was_training = student.training
    student.eval()
    out = student.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=cfg.temperature > 0,
        temperature=cfg.temperature if cfg.temperature > 0 else None,
        top_k=None,
        top_p=None,
        pad_token_id=pad_id,
        synced_gpus=synced,
    )
    student.train(was_training)
    mask = torch.zeros_like(out, dtype=torch.bool)
    mask[:, prompt.shape[1] - 1 : -1] = True  # positions predicting generated tokens
    return out, mask


def mixed_precision(device: str, dtype: torch.dtype | None):
    """torch autocast for the forward passes (a no-op context when `dtype` is None)."""
    return torch.autocast(
        "cuda" if device.startswith("cuda") else "cpu",
        dtype=dtype or torch.float32,
        enabled=dtype is not None,
    )


@torch.no_grad()
def evaluate(
    student,
    teacher,
    data: DistillData,
    cfg,
    micro_batch: int,
    loss_cfg,
    dist: Dist,
    amp: torch.dtype | None = None,
) -> dict[str, float]:
    """Acceptance proxy on the held-out blocks: eval/alpha (Σ min(p, q)), eval/greedy_agree and
    eval/loss, token-weighted over this rank's share of `cfg.max_batches` batches, reduced over ranks."""
    import torch.distributed as tdist

    from draftforge.evaluate.proxy import acceptance_from_logits

    was_training = student.training
    student.eval()
    n = data.eval_ids.shape[0]
    sums = torch.zeros(4, dtype=torch.float64)  # alpha·tokens, agree·tokens, loss·tokens, tokens
    batches = min(cfg.max_batches, math.ceil(n / micro_batch))
    # every rank runs the same number of forwards (ZeRO-3 forwards are collective); a rank without a
    # batch of its own in the last round repeats batch 0 and does not count it
    for rnd in range(math.ceil(batches / dist.world)):
        b = rnd * dist.world + dist.rank
        counted = b < batches
        start = b * micro_batch if counted else 0
        ids = data.eval_ids[start : start + micro_batch].to(dist.device)
        mask = data.eval_mask[start : start + micro_batch].to(dist.device)
        with mixed_precision(dist.device, amp):
            t = teacher_logits(teacher, ids)
            s = student(input_ids=ids).logits
        acc = acceptance_from_logits(s, t, mask, temperature=cfg.temperature)
        loss, _ = distill_loss(
            s,
            t,
            loss_cfg.terms,
            mask=mask,
            labels=labels_from_ids(ids),
            temperature=loss_cfg.temperature,
            beta=loss_cfg.jsd_beta,
            chunk_tokens=loss_cfg.chunk_tokens,
        )
        k = acc["tokens"]
        if k and counted:
            sums += torch.tensor(
                [acc["alpha"] * k, acc["greedy_agree"] * k, float(loss) * k, k], dtype=torch.float64
            )
    if dist.world > 1:
        tdist.all_reduce(sums)
    student.train(was_training)
    k = float(sums[3])
    if k == 0:
        return {"eval/alpha": float("nan"), "eval/greedy_agree": float("nan"), "eval/loss": float("nan")}
    return {
        "eval/alpha": float(sums[0]) / k,
        "eval/greedy_agree": float(sums[1]) / k,
        "eval/loss": float(sums[2]) / k,
        "eval/tokens": k,
    }


# ---- the recipe ----------------------------------------------------------------------------------
def run(
    recipe: Recipe, resume: bool = False, progress: bool = True, stop_after: int | None = None
) -> DistillResult:
    """Train the recipe's draft and export it; returns where it went and its metrics.

    `stop_after` ends the loop early after that many optimizer steps (a checkpoint is written
    there), which is what an interrupted run looks like; tests use it to check resume.
    """
    with single_process_env():
        return _run(recipe, resume, progress, stop_after)


def _run(recipe: Recipe, resume: bool, progress: bool, stop_after: int | None) -> DistillResult:
    if recipe.deepspeed.device == "cpu" or not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before anything imports deepspeed
    dist = setup_distributed(recipe.deepspeed)
    torch.manual_seed(recipe.seed + dist.rank)
    random.seed(recipe.seed + dist.rank)
    preflight(recipe)

    teacher, tokenizer = load_teacher(recipe, dist.device, dist.world)
    shape = recipe.draft_shape()
    check_vocab(shape, teacher, tokenizer)

    from draftforge.assets import cache_dir

    teacher_id = recipe.target_spec()
    if isinstance(recipe.target, RandomTarget):
        teacher_id += f"#seed{recipe.target.seed}#std{recipe.target.init_std}"
    prep = dict(
        data=recipe.data,
        base_dir=recipe.base_dir,
        tokenizer=tokenizer,
        teacher=teacher,
        teacher_id=teacher_id,
        device=dist.device,
        cache=cache_dir() / "distill-data",
    )
    if dist.is_main:
        regen = recipe.data.regenerate
        total = min(regen.max_records, recipe.data.eval_records) + regen.max_records
        bar = RichProgress(total, 0, "teacher regeneration") if progress and regen.enabled else NullProgress()
        try:
            data = prepare_data(**prep, progress=lambda n: bar.update(advance=n))
        finally:
            bar.stop()
    barrier()
    if not dist.is_main:
        data = prepare_data(**prep)  # a cache hit: rank 0 wrote it

    student, init_info = build_student(recipe, shape, teacher, data)
    student.to(dist.device)
    out = prepare_output(recipe, resume, dist)  # only now: a run that fails while setting up leaves nothing
    if isinstance(recipe.target, RandomTarget) and dist.is_main and not (out / "teacher").is_dir():
        # keep the random teacher next to the draft (evaluate needs it); saved before ZeRO-3 partitions it
        teacher.save_pretrained(out / "teacher")
        tokenizer.save_pretrained(out / "teacher")
    engine = student_engine(student, recipe, dist.world)
    teacher = teacher_engine(teacher, recipe, dist.world)

    topk = None
    if recipe.data.teacher_topk is not None:
        topk = cached_teacher_topk(
            teacher,
            data,
            recipe.data.teacher_topk,
            recipe.optim.micro_batch_size,
            out,
            dist,
            show=progress and dist.is_main,
        )

    state = TrainState()
    if resume:
        state = load_checkpoint(engine, out)
    log = MetricsLog(out, dist.is_main, recipe.output.tensorboard, state.step if resume else None)
    opt = recipe.optim
    sampler = BatchSampler(data.train_ids.shape[0], opt.micro_batch_size, recipe.seed, dist.rank, dist.world)
    tokens_per_step = opt.micro_batch_size * opt.grad_accum * dist.world * recipe.data.seq_len
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    synced = dist.world > 1 and recipe.deepspeed.zero_stage == 3
    amp = autocast_dtype(recipe)  # bf16 below ZeRO-3: autocast over fp32 parameters

    manifest_path = out / "initial_metrics.json"
    if resume and manifest_path.is_file():
        initial = json.loads(manifest_path.read_text())
    else:
        initial = evaluate(
            engine.module, teacher, data, recipe.eval, opt.micro_batch_size, recipe.loss, dist, amp
        )
        if dist.is_main:
            manifest_path.write_text(json.dumps(initial))
            log.write(0, initial)
    flops = peak_flops(dist.device)
    train_flops_per_token = 6 * shape.non_embedding_params() + 6 * shape.lm_head_weight_bytes("fp32") / 4

    bar = (
        RichProgress(opt.max_steps, state.step, recipe.name) if progress and dist.is_main else NullProgress()
    )
    last = {"train/loss": float("nan")}
    last_tag = None
    t0, cpu0, tok0 = time.perf_counter(), time.process_time(), state.tokens
    end_step = opt.max_steps if stop_after is None else min(opt.max_steps, state.step + stop_after)
    try:
        engine.train()
        while state.step < end_step:
            on_policy = opt_step_on_policy(recipe, state.step)
            loss_sum, parts_sum = 0.0, {}
            for _ in range(opt.grad_accum):
                idx = sampler.indices(state.micro_step)
                ids = data.train_ids[idx].to(dist.device)  # (B, T)
                mask = data.train_mask[idx].to(dist.device)  # (B, T)
                cached = None
                if on_policy:
                    with mixed_precision(dist.device, amp):
                        ids, mask = on_policy_batch(
                            engine.module, ids, recipe.data.on_policy, recipe.data.seq_len, pad_id, synced
                        )
                elif topk is not None:
                    cached = teacher_logprobs_from_topk(
                        topk["values"][idx].to(dist.device),
                        topk["indices"][idx].to(dist.device),
                        shape.vocab_size,
                    )
                with mixed_precision(dist.device, amp):
                    loss, parts = loss_step(engine, teacher, ids, mask, recipe.loss, cached)
                if not torch.isfinite(loss).all():
                    raise DraftforgeError(
                        f"the loss became {float(loss.detach())} at step {state.step + 1}; training stopped and the last good "
                        f"checkpoint ({last_tag or 'none yet'}) is intact: lower optim.lr, raise optim.warmup_steps "
                        "or use precision bf16/fp32, then --resume"
                    )
                engine.backward(loss)
                engine.step()
                state.micro_step += 1
                loss_sum += float(loss.detach()) / opt.grad_accum
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v / opt.grad_accum
            state.step += 1
            state.tokens += tokens_per_step
            last = {"train/loss": mean_over_ranks(loss_sum, dist)}
            elapsed = time.perf_counter() - t0
            tps = (state.tokens - tok0) / max(elapsed, 1e-9)
            metrics = {
                **last,
                **{f"train/{k}": v for k, v in parts_sum.items()},
                "lr": engine.get_lr()[0],
                "tokens": state.tokens,
                "tokens_per_s": tps,
                "elapsed_s": elapsed,
                "cpu_s": time.process_time() - cpu0,  # process CPU time: robust to other load on shared CPUs
            }
            if on_policy:
                metrics["train/on_policy"] = 1.0
            if flops:
                metrics["mfu"] = tps * train_flops_per_token / (flops * dist.world)
            boundary = state.step == end_step
            if state.step % recipe.eval.every_steps == 0 or state.step == opt.max_steps:
                metrics.update(
                    evaluate(
                        engine.module,
                        teacher,
                        data,
                        recipe.eval,
                        opt.micro_batch_size,
                        recipe.loss,
                        dist,
                        amp,
                    )
                )
                last.update({k: v for k, v in metrics.items() if k.startswith("eval/")})
            if state.step % recipe.output.log_every == 0 or boundary or "eval/alpha" in metrics:
                log.write(state.step, metrics)
            if state.step % recipe.output.save_every == 0 or boundary:
                last_tag = save_checkpoint(engine, out, state, recipe.output.keep_checkpoints, dist)
            bar.update(
                completed=state.step,
                info=f"loss {last['train/loss']:.4f}  {tps:,.0f} tok/s"
                + (f"  α {last['eval/alpha']:.3f}" if "eval/alpha" in last else ""),
            )
    finally:
        bar.stop()
    elapsed = time.perf_counter() - t0
    tps = (state.tokens - tok0) / max(elapsed, 1e-9)
    if "eval/alpha" not in last:
        last.update(
            evaluate(engine.module, teacher, data, recipe.eval, opt.micro_batch_size, recipe.loss, dist, amp)
        )
    final = {
        "train/loss": last["train/loss"],
        "eval/alpha": last["eval/alpha"],
        "eval/greedy_agree": last["eval/greedy_agree"],
    }
    draft_dir = out / DRAFT
    if state.step >= opt.max_steps:
        export(engine, recipe, shape, teacher, tokenizer, init_info, data, state, initial, final, out, dist)
        barrier()
        if recipe.publish is not None and dist.is_main:
            publish_draft(draft_dir, recipe)
    barrier()
    return DistillResult(
        out,
        draft_dir,
        state.step,
        state.tokens,
        {k: initial[k] for k in ("eval/alpha", "eval/greedy_agree")},
        final,
        tps,
    )


def opt_step_on_policy(recipe: Recipe, step: int) -> bool:
    """Whether optimizer step `step` trains on student samples (seeded, identical on every rank)."""
    frac = recipe.data.on_policy.fraction
    return frac > 0 and random.Random(recipe.seed * 7919 + step).random() < frac


@torch.no_grad()
def cached_teacher_topk(
    teacher, data: DistillData, k: int, micro_batch: int, out: Path, dist: Dist, show: bool = False
):
    """The teacher's top-k log-probs for every training block, computed once and kept in the run
    folder (later epochs and resumed runs skip the teacher forward)."""
    path = out / f"teacher_top{k}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    values, indices = [], []
    n = data.train_ids.shape[0]
    bar = RichProgress(n, 0, f"teacher top-{k}") if show else NullProgress()
    try:
        for start in range(0, n, micro_batch):
            ids = data.train_ids[start : start + micro_batch].to(dist.device)
            packed = topk_teacher(teacher_logits(teacher, ids), k)
            values.append(packed["values"].cpu())
            indices.append(packed["indices"].cpu())
            bar.update(completed=min(n, start + micro_batch))
    finally:
        bar.stop()
    result = {"values": torch.cat(values), "indices": torch.cat(indices)}
    if dist.is_main:
        torch.save(result, path)
    return result


def export(
    engine, recipe, shape, teacher, tokenizer, init_info, data, state, initial, final, out, dist
) -> None:
    """Write out/draft (HF folder + draftforge.json) on rank 0; a random teacher is saved next to it."""
    from draftforge.distill.export import draft_manifest, gather_state_dict, generation_config_for, save_draft

    sd = gather_state_dict(engine, recipe.deepspeed.zero_stage)
    if not dist.is_main:
        return
    if recipe.deepspeed.precision != "fp32":  # ship the weights in the precision the draft was trained for
        half = TORCH_DTYPES[recipe.deepspeed.precision]
        sd = {k: v.to(half) if v.is_floating_point() else v for k, v in sd.items()}
    target = target_info(recipe)
    if isinstance(recipe.target, RandomTarget):
        target["path"] = str((out / "teacher").resolve())
    manifest = draft_manifest(
        shape=shape,
        target=target,
        init=init_info,
        recipe=recipe,
        data_info=data.info,
        steps=state.step,
        tokens=state.tokens,
        initial_metrics={k: initial[k] for k in ("eval/alpha", "eval/greedy_agree")},
        final_metrics=final,
        device=dist.device,
    )
    save_draft(
        out / DRAFT, engine.module.config, sd, tokenizer, generation_config_for(teacher, tokenizer), manifest
    )


def publish_draft(draft_dir: Path, recipe: Recipe) -> None:
    """The recipe's `publish:` section: hand the exported folder to draftforge.publish."""
    from draftforge.publish import PublishConfig
    from draftforge.publish import run as publish_run

    try:
        publish_run(PublishConfig.from_section(draft_dir, recipe.publish))
    except DraftforgeError as exc:
        raise DraftforgeError(
            f"the draft is saved in {draft_dir}, but publishing it failed: {exc} "
            f"(retry with `draftforge publish {draft_dir}`)"
        ) from None


# ---- launcher entry point ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """`python -m draftforge.distill.train recipe.yaml [--set k=v ...] [--resume]` under torchrun/deepspeed."""
    from draftforge.distill.recipe import load_recipe

    parser = argparse.ArgumentParser(description="draftforge distillation worker (one per process)")
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    args = parser.parse_args(argv)
    import warnings

    # DeepSpeed still calls torch.distributed's deprecated collectives; one warning per call is noise
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        result = run(recipe, resume=args.resume, progress=not args.no_progress)
    except DraftforgeError as exc:
        import sys

        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    import torch.distributed as tdist

    if not tdist.is_initialized() or tdist.get_rank() == 0:
        print(
            json.dumps(
                {
                    "out_dir": str(result.out_dir),
                    "draft_dir": str(result.draft_dir),
                    "steps": result.steps,
                    "tokens": result.tokens,
                    "initial_metrics": result.initial_metrics,
                    "final_metrics": result.final_metrics,
                    "tokens_per_s": result.tokens_per_s,
                }
            )
        )


if __name__ == "__main__":
    main()
