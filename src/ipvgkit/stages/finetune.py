"""``ipvg finetune``: LoRA training of a video model on a prepare folder, with accelerate.

The stage holds no model code: the model layer (:mod:`ipvgkit.models.wan_train`) encodes and predicts,
:mod:`ipvgkit.models.lora_train` adds and saves the adapter. One process by default; under
``accelerate launch`` (DDP, FSDP, DeepSpeed: configs/accelerate/) every rank trains on its own share
of each step's samples (:mod:`ipvgkit.stages.finetune_data`).

Exact resume: the noise, noise levels and samples of micro-batch ``k`` on rank ``r`` depend only on
``(seed, k, r)``; a checkpoint (accelerate ``save_state``: LoRA tensors, optimizer, lr scheduler, the
RNG of every rank) plus the step count is therefore everything a run needs to continue as if it had
never stopped. The end of a run is a checkpoint too.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ipvgkit import __version__, config
from ipvgkit.errors import UsageError
from ipvgkit.models import lora_train
from ipvgkit.models.quantize import check_supported as check_quantize
from ipvgkit.models.training import flow_loss, sample_sigmas
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages import finetune_ckpt as ck
from ipvgkit.stages import finetune_val
from ipvgkit.stages.finetune_config import DECAYING, RESUMABLE_CHANGES, FinetuneConfig
from ipvgkit.stages.finetune_data import TrainData, positions, sample_index, training_inputs
from ipvgkit.stages.finetune_setup import (
    SHARDED_KINDS,
    asked_kind,
    cache_key_for,
    check_distributed,
    check_launch,
    check_timeline,
    final_states,
    launch_rank,
    make_optimizer,
    make_scheduler,
    memory,
    resolve_device,
    trainable_digest,
    unpartitioned_loading,
    write_final,
)

FINAL = ck.FINAL


@dataclass
class FinetuneResult:
    out: Path
    steps: int
    final: Path
    resumed_from: Path | None = None
    last: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)  # the model layer's describe(): components loaded


def finetune(cfg: FinetuneConfig, progress: Progress | None = None) -> FinetuneResult:
    """Train (or resume) the run ``cfg.out`` on ``cfg.data`` (module docstring)."""
    return _Run(cfg, ensure(progress)).train()


class _Run:
    def __init__(self, cfg: FinetuneConfig, progress: Progress):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if cfg.data is None or cfg.out is None:
            raise UsageError("finetune needs data (a prepare folder) and out (the run folder)")
        self.cfg = cfg = copy.deepcopy(cfg)
        self.progress = progress
        self.out = Path(cfg.out)
        self.notes: list[str] = []
        cpu, mp, dtype = resolve_device(cfg, self.notes)
        self.data = TrainData(
            Path(cfg.data), cfg, progress, cache_key_for(cfg)
        )  # checked before any weight loads
        check_timeline(cfg, self.data.samples)
        self.resume_from = ck.check_run_folder(self.out, cfg, launch_rank() == 0)
        asked = asked_kind()
        self.acc = Accelerator(cpu=cpu, mixed_precision=mp)
        check_launch(asked, self.acc.distributed_type.value)
        self.sharded = self.acc.distributed_type.value in SHARDED_KINDS  # accelerate saves the model
        check_distributed(cfg, self.acc.distributed_type.value, self.sharded)
        check_quantize(cfg.memory.quantize, self.acc.device, self.sharded)  # before any weight loads
        self.model = self._load_model(dtype)
        set_seed(cfg.seed)  # the LoRA's initial A matrices (and the face adapter's weights)
        self._attach_trainables()
        self._prepare()
        self.saved_config = config.to_dict(cfg)
        for n in self.notes:
            self._log(n)

    def _attach_trainables(self) -> None:
        """The LoRA and / or the face adapter, then the memory levers that act on the frozen weights."""
        cfg = self.cfg
        self.layers: list[str] = []
        if cfg.method != "face-adapter" or cfg.face_adapter.lora:
            self.layers = lora_train.inject_lora(
                self.model.trainable(), cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets
            )
        if cfg.method == "face-adapter":
            fa = cfg.face_adapter
            self.model.attach_face_adapter(
                self.data.face_dim, num_tokens=fa.num_tokens, depth=fa.depth, heads=fa.heads
            )
            self.notes.append(
                f"face adapter: {self.data.face_dim}-d face embeddings -> {fa.num_tokens} tokens"
                + (" + LoRA" if self.layers else " (no LoRA: face_adapter.lora=false)")
            )
        if cfg.memory.quantize != "none":  # the frozen base weights as int8 / fp8 (memory levers)
            self.notes.append(self.model.quantize_frozen(cfg.memory.quantize))
        if cfg.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.model.trainable().train()

    def _prepare(self) -> None:
        """Optimizer, lr schedule, accelerate's wrapping, block swap and the checkpoint hooks."""
        cfg = self.cfg
        self.params = [p for p in self.model.trainable().parameters() if p.requires_grad]
        optimizer = make_optimizer(cfg.optim, self.params, self.acc.device, self.notes)
        self.scheduler = make_scheduler(cfg.optim, optimizer, cfg.max_steps)
        if self.acc.distributed_type.value == "DEEPSPEED":  # no dataloader to take it from: say it
            self.acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = (
                cfg.batch_size
            )
        self.model.denoiser, self.optimizer = self.acc.prepare(self.model.trainable(), optimizer)
        if cfg.memory.block_swap:  # after prepare: its device placement would undo it, DDP wants 1 device
            self.notes.append(self.model.enable_block_swap(cfg.memory.block_swap).summary())
        if self.sharded:  # FSDP2 replaces the parameters by sharded ones: clip the ones it trains
            self.params = [p for p in self.model.denoiser.parameters() if p.requires_grad]
        self.acc.register_for_checkpointing(self.scheduler)
        if not self.sharded:  # checkpoints hold the LoRA tensors only, not the frozen base weights
            self.acc.register_save_state_pre_hook(self._save_hook)
            self.acc.register_load_state_pre_hook(self._load_hook)

    # ------------------------------------------------------------------ setup
    def _log(self, msg: str) -> None:
        if self.acc.is_main_process:
            self.progress.log(msg)

    def _load_model(self, dtype: torch.dtype):
        from ipvgkit.models.resolve import resolve_model
        from ipvgkit.models.wan_train import WanTraining

        cfg = self.cfg
        model = WanTraining(resolve_model(cfg.model, cfg.models_dir), str(self.acc.device), dtype)
        events = any(s.events for s in self.data.samples)
        needs_text = not self.data.all_cached or (
            events and not cfg.timeline
        )  # the cache holds timeline contexts
        needs_vae = (
            not self.data.all_cached or cfg.method == "reference-concat"
        )  # references: encoded per step
        with unpartitioned_loading(self.acc):
            model.load(text=needs_text, vae=needs_vae)
        if self.data.none_cached:
            self.notes.append(
                "no cached tensors in the prepare folder: latents and text are encoded on the fly"
            )
        elif not self.data.all_cached:
            n = len(self.data.samples) - len(self.data.cache)
            self.notes.append(f"{n} sample(s) without cached tensors are encoded on the fly")
        if cfg.flow.timestep_sampling == "shifted" and cfg.flow.flow_shift is None:
            shift = model.scheduler_flow_shift()
            if shift is None:
                raise UsageError(
                    "flow.flow_shift is not set and the model's scheduler has none: set it (e.g. 3.0)"
                )
            cfg.flow.flow_shift = shift
            self.notes.append(f"flow_shift {shift:g} from the model's scheduler config")
        return model

    # ------------------------------------------------------------------ checkpoint hooks
    def _save_hook(self, models: list, weights: list, output_dir: str) -> None:
        if self.acc.is_main_process:
            from safetensors.torch import save_file

            state = lora_train.trainable_state(self.acc.unwrap_model(models[0]))
            save_file(state, os.path.join(output_dir, ck.ADAPTER_STATE))
        weights.clear()

    def _load_hook(self, models: list, input_dir: str) -> None:
        from safetensors.torch import load_file

        path = Path(input_dir) / ck.ADAPTER_STATE
        state = load_file(str(path))
        lora_train.load_trainable_state(self.acc.unwrap_model(models.pop()), state, str(path))

    def _resume(self) -> int:
        ckpt = self.resume_from
        if ckpt is None:
            if self.cfg.resume == "auto":
                self._log("--resume auto: no checkpoint yet, starting from step 0")
            return 0
        state = ck.read_state(ckpt)
        saved = state["config"]
        diff = ck.config_mismatch(saved, self.saved_config, RESUMABLE_CHANGES)
        if diff:
            raise UsageError(f"--resume {ckpt}: the checkpoint was trained with another config: {diff}")
        o = self.cfg.optim
        if (
            o.lr_schedule in DECAYING
            and o.schedule_steps is None
            and saved["max_steps"] != self.cfg.max_steps
        ):
            raise UsageError(
                f"--resume: lr schedule {o.lr_schedule} spans max_steps ({saved['max_steps']} in the checkpoint, "
                f"{self.cfg.max_steps} now); set optim.schedule_steps to change max_steps"
            )
        self.acc.load_state(str(ckpt))
        step = int(state["step"])
        if int(state.get("world_size", 1)) != self.acc.num_processes:
            self._log(
                f"resuming with {self.acc.num_processes} rank(s) from a checkpoint of {state['world_size']}: "
                "the samples of the coming steps are split differently than in an uninterrupted run"
            )
        if self.acc.is_main_process:
            ck.trim_metrics(self.out, step)
            finetune_val.forget_after(self.out, step)
        self._log(f"resumed from {ckpt} at step {step}")
        return step

    def _save_checkpoint(self, step: int) -> Path:
        final = ck.checkpoint_path(self.out, step)
        tmp = final.parent / f".{final.name}.tmp-{os.environ.get('MASTER_PORT', 'single')}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        digests = self._rank_digests()
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            if len(set(digests)) > 1:
                self._log(f"warning: the ranks' LoRA weights differ at step {step} ({digests})")
            state = {"step": step, "micro_batches": step * self.cfg.grad_accum, "config": self.saved_config,
                     "world_size": self.acc.num_processes, "adapter_sha256_per_rank": digests,
                     "ipvgkit": __version__}  # fmt: skip
            (tmp / ck.STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            ck.prune(self.out, self.cfg.keep_checkpoints)
            ck.write_loss_svg(self.out)
        self.acc.wait_for_everyone()
        return final

    def _rank_digests(self) -> list[str]:
        """sha256 of every rank's trainable tensors (equal on all ranks when data parallelism works)."""
        from accelerate.utils import gather_object

        if self.sharded:
            return []
        return gather_object([trainable_digest(self.acc.unwrap_model(self.model.denoiser))])

    # ------------------------------------------------------------------ training
    def _micro_loss(self, k: int) -> tuple[torch.Tensor, list[str]]:
        cfg = self.cfg
        rank, world = self.acc.process_index, self.acc.num_processes
        idx = [sample_index(p, len(self.data), cfg.seed) for p in positions(k, rank, world, cfg.batch_size)]
        items = [self.data.load(i) for i in idx]
        latents, cond = training_inputs(self.model, items, self.cfg, self.acc.device)
        g = torch.Generator().manual_seed(((cfg.seed * 1_000_003 + k) * 1009 + rank) % (2**63))
        sigmas = sample_sigmas(cfg.flow, len(items), g, cfg.flow.flow_shift or 1.0)
        noise = torch.randn(latents.shape, generator=g).to(latents.device)
        pred, target = self.model.predict(latents, noise, sigmas, cond)
        return flow_loss(pred, target, sigmas, cfg.flow), [it.sample_id for it in items]

    def _step(self, step: int) -> dict[str, Any]:
        from accelerate.utils import gather_object

        cfg = self.cfg
        t0 = time.perf_counter()
        lr = float(self.scheduler.get_last_lr()[0])
        total = torch.zeros((), device=self.acc.device)
        ids: list[str] = []
        for micro in range(cfg.grad_accum):
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last else self.acc.no_sync(self.model.denoiser)
            with sync, self.acc.autocast():
                loss, got = self._micro_loss(step * cfg.grad_accum + micro)
                self.acc.backward(loss / cfg.grad_accum)
            total += loss.detach()
            ids += got
        self.model.release()  # the last backward pass is done: restore the processors
        grad_norm = self.acc.clip_grad_norm_(self.params, cfg.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_mean = self.acc.reduce(total / cfg.grad_accum, reduction="mean")
        return {
            "step": step + 1, "loss": float(loss_mean), "lr": lr, "grad_norm": None if grad_norm is None else float(grad_norm),
            "s_per_step": round(time.perf_counter() - t0, 4), **memory(self.acc.device),
            "samples": gather_object(ids),
        }  # fmt: skip

    def train(self) -> FinetuneResult:
        cfg = self.cfg
        start = self._resume()
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            config.save(cfg, self.out / "config.yaml")
        self.progress.phase("train", total=cfg.max_steps)
        self.progress.advance(min(start, cfg.max_steps))
        row: dict[str, Any] = {}
        for step in range(start, cfg.max_steps):
            row = self._step(step)
            if self.acc.is_main_process:
                with (self.out / ck.METRICS).open("a") as f:
                    f.write(json.dumps(row) + "\n")
            self.progress.status(
                f"step {row['step']}/{cfg.max_steps} loss {row['loss']:.4f} {row['s_per_step']:.2f}s/step"
            )
            self.progress.advance()
            if row["step"] % cfg.checkpoint_every == 0 or row["step"] == cfg.max_steps:
                self._save_checkpoint(row["step"])
            if cfg.validation.every and row["step"] % cfg.validation.every == 0:
                self._validate(row["step"])
        final = self._write_final(max(start, cfg.max_steps) if start < cfg.max_steps else start)
        return FinetuneResult(self.out, max(start, cfg.max_steps), final, self.resume_from, row,
                              self.data.skipped, self.notes, self.model.describe())  # fmt: skip

    _validator: finetune_val.Validator | None = None  # the main process's, from the first validation

    def _validate(self, step: int) -> None:
        """Generate and score the validation cases with the live model (:mod:`finetune_val`), after
        writing its current weights beside them."""
        weights = finetune_val.step_dir(self.out, step) / "weights"
        self._write_final(step, weights)
        if self.acc.is_main_process:
            if self._validator is None:
                device = "cpu" if self.acc.device.type == "cpu" else str(self.acc.device)
                self._validator = finetune_val.Validator(self.model, self.cfg, device)
            finetune_val.validate(self.out, step, self.cfg, weights, self._validator, self.progress)
            if self._validator.note not in self.notes:
                self.notes.append(self._validator.note)
                self._log(self._validator.note)
        self.acc.wait_for_everyone()

    def _write_final(self, steps: int, dest: Path | None = None) -> Path:
        """``RUN/final`` (or ``dest``): the diffusers-format LoRA and / or the face adapter, the adapter
        json, the config (and ComfyUI file)."""
        dest = dest if dest is not None else self.out / FINAL
        # a collective under FSDP / DeepSpeed, whose full state dict only the main process receives
        denoiser = self.acc.get_state_dict(self.model.denoiser) if self.sharded else None
        if self.acc.is_main_process:
            state, face = final_states(
                self.acc.unwrap_model(self.model.denoiser), denoiser, self.cfg, self.layers, steps
            )
            write_final(dest, state, self.cfg, self.layers, self.saved_config, steps, face)
            if dest == self.out / FINAL:
                ck.write_loss_svg(self.out)
        self.acc.wait_for_everyone()
        return dest
