"""The pieces of a finetune run that need no training state: device and precision, the cache key,
the optimizer and lr schedule, memory figures, and the ``RUN/final`` folder."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ipvgkit import __version__, config
from ipvgkit.errors import MissingDependencyError, UsageError
from ipvgkit.models import lora_train
from ipvgkit.stages.finetune_config import FinetuneConfig, OptimSettings


def resolve_device(cfg: FinetuneConfig, notes: list[str]) -> tuple[bool, str, torch.dtype]:
    """(cpu?, mixed precision, frozen-weight dtype); a CPU run trains in fp32 and says so."""
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise UsageError(f"unknown device {cfg.device!r}; use auto, cpu or cuda")
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.device.startswith("cuda") and cpu:
        raise UsageError(f"device {cfg.device!r} asked for but no CUDA GPU is visible")
    mp = cfg.mixed_precision
    if cpu and mp != "no":
        notes.append(f"training on CPU: fp32 instead of mixed precision {mp}")
        mp = "no"
    dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mp]
    return cpu, mp, dtype


def launch_rank() -> int:
    """This process's rank before accelerate is set up: torchrun's ``RANK`` or MPI's (read as accelerate
    reads them), 0 for a plain one-process run."""
    from accelerate.utils import get_cpu_distributed_information

    return get_cpu_distributed_information().rank


SHARDED_KINDS = ("FSDP", "DEEPSPEED")  # accelerate's distributed types that hold the model in shards
_ASKED_BY = {"FSDP": "ACCELERATE_USE_FSDP", "DEEPSPEED": "ACCELERATE_USE_DEEPSPEED"}


def asked_kind() -> str | None:
    """FSDP or DEEPSPEED when the launch asked for it (``accelerate launch`` sets ``ACCELERATE_USE_*``),
    else None; DeepSpeed asked for but not installed is an error (before accelerate's traceback)."""
    asked = [k for k, env in _ASKED_BY.items() if os.environ.get(env, "false").lower() == "true"]
    if "DEEPSPEED" in asked and not has_module("deepspeed"):
        raise MissingDependencyError(
            "the launch asked for DeepSpeed but it is not installed: pip install deepspeed"
        )
    return asked[0] if asked else None


def check_launch(asked: str | None, distributed_type: str) -> None:
    """A launch that asked for FSDP or DeepSpeed but got another kind of run is an error, not a silent
    fallback: accelerate sets up FSDP and DeepSpeed on GPUs only, and on CPU trains plain data parallel."""
    if asked is not None and distributed_type != asked:
        raise UsageError(
            f"the launch asked for {asked} ({_ASKED_BY[asked]}=true) but accelerate set up {distributed_type}: "
            "accelerate runs FSDP and DeepSpeed on GPUs only; on CPU launch configs/accelerate/cpu_ddp.yaml "
            "(data parallel)"
        )


def check_distributed(cfg: FinetuneConfig, kind: str, sharded: bool) -> None:
    """The settings that do not combine with the launch accelerate set up (``kind``)."""
    if sharded and cfg.validation.every:
        raise UsageError(
            "validation runs on unsharded runs only (DDP or one process): set validation.every=0"
        )
    if sharded and cfg.memory.block_swap:
        raise UsageError("memory.block_swap does not combine with FSDP / DeepSpeed sharding: set it to 0")
    if kind == "DEEPSPEED" and cfg.grad_accum > 1:
        raise UsageError(
            "under DeepSpeed set gradient_accumulation_steps in its config and keep grad_accum 1"
        )


def check_timeline(cfg: FinetuneConfig, samples: Sequence[Any]) -> None:
    if cfg.timeline and cfg.batch_size > 1 and any(s.events for s in samples):
        raise UsageError(
            "timeline training conditions one clip at a time: use batch_size 1 (and grad_accum), "
            "or timeline=false"
        )


@contextlib.contextmanager
def unpartitioned_loading(acc: Any):
    """Load the model's components whole under DeepSpeed ZeRO-3 too: accelerate registers its DeepSpeed
    config with transformers, whose ``from_pretrained`` then partitions every model it loads (the frozen
    text encoder would be unusable outside the DeepSpeed engine); the engine partitions the trained
    transformer itself when it is prepared."""
    if acc.distributed_type.value != "DEEPSPEED":
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    plugin = acc.state.deepspeed_plugin
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()


def cache_key_for(cfg: FinetuneConfig) -> str | None:
    """The ``ipvg prepare cache`` key of this run's model and size (None with use_cache=false)."""
    if not cfg.use_cache:
        return None
    from ipvgkit.models.resolve import resolve_model
    from ipvgkit.stages.prepare_cache import cache_key, model_revision

    resolved = resolve_model(cfg.model, cfg.models_dir)
    size = {"height": cfg.height, "width": cfg.width, "frames": cfg.frames}
    return cache_key(cfg.model, model_revision(resolved), size)


def has_module(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def make_optimizer(
    o: OptimSettings, params: list[torch.nn.Parameter], device: torch.device, notes: list[str]
) -> torch.optim.Optimizer:
    """AdamW or bitsandbytes' 8-bit AdamW; ``auto`` is resolved (into ``o``) and said in ``notes``."""
    kind = o.optimizer
    has_bnb = has_module("bitsandbytes")
    if kind == "auto":
        kind = "adamw8bit" if has_bnb and device.type == "cuda" else "adamw"
        notes.append(f"optimizer auto -> {kind}")
        o.optimizer = kind
    kw = dict(lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay)
    if kind == "adamw8bit":
        if not has_bnb or device.type != "cuda":
            raise MissingDependencyError(
                "optim.optimizer adamw8bit needs bitsandbytes and a CUDA GPU (pip install bitsandbytes)"
            )
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, **kw)
    return torch.optim.AdamW(params, **kw)


def make_scheduler(o: OptimSettings, optimizer: torch.optim.Optimizer, max_steps: int):
    """diffusers' lr schedule, spanning ``schedule_steps`` (or ``max_steps``), with warm-up."""
    from diffusers.optimization import get_scheduler

    total = o.schedule_steps or max_steps
    return get_scheduler(o.lr_schedule, optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=total)


def memory(device: torch.device) -> dict[str, Any]:
    """Peak memory so far: CUDA allocations on a GPU, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return {
            "memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            "memory_kind": "cuda-peak",
        }
    return {
        "memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory_kind": "rss-peak",
    }


def final_face_adapter(adapter: Any, full: dict | None, steps: int) -> Any:
    """A CPU copy of the trained face adapter with the run's step count in its config; ``full``: the
    gathered state dict of a sharded run (keys ``ipvg_face_adapter.*``)."""
    import copy

    from ipvgkit.models.face_adapter import FaceAdapter

    out = FaceAdapter(copy.deepcopy(adapter.cfg))
    out.cfg.steps = steps
    prefix = "ipvg_face_adapter."
    if full is not None:
        out.load_state_dict({k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)})
    else:
        out.load_state_dict({k: v.detach().cpu() for k, v in adapter.state_dict().items()})
    return out


def trainable_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's trainable tensors, by name (what ranks compare after a step)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(lora_train.trainable_state(module).items()):
        h.update(name.encode())
        h.update(t.float().numpy().tobytes())
    return h.hexdigest()


def final_states(
    denoiser: Any, full: dict | None, cfg: FinetuneConfig, layers: Any, steps: int
) -> tuple[dict | None, Any]:
    """(diffusers-format LoRA state or None, face adapter or None) of a run's end; ``full`` is the
    gathered state dict under FSDP/DeepSpeed (None otherwise)."""
    state = None
    if layers:
        state = (
            lora_train.lora_from_full_state(full)
            if full is not None
            else lora_train.diffusers_state(denoiser)
        )
    face = (
        final_face_adapter(denoiser.ipvg_face_adapter, full, steps) if cfg.method == "face-adapter" else None
    )
    return state, face


def write_final(
    dest: Path,
    state: dict[str, torch.Tensor] | None,
    cfg: FinetuneConfig,
    layers: Sequence[str],
    saved: dict,
    steps: int,
    face_adapter: Any = None,
) -> Path:
    """``RUN/final``: the diffusers-format LoRA, ``ipvg_adapter.json``, the config (and the ComfyUI file),
    written into a temp folder that replaces ``dest`` when complete."""
    from ipvgkit.models.identity import ADAPTER_FILE

    meta = {"ipvg_base_model": cfg.model, "ipvg_identity": cfg.method, "ipvg_steps": str(steps),
            "ipvg_version": __version__, "ipvg_config": json.dumps(saved, default=str)}  # fmt: skip
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if state is not None:
        lora_train.save_diffusers_lora(tmp, state, cfg.lora.rank, cfg.lora.alpha, layers, meta)
        if "comfy" in cfg.export:
            lora_train.export_comfy(tmp, state, cfg.lora.alpha, meta)
    if face_adapter is not None:
        from ipvgkit.models.face_adapter import WEIGHTS_FILE, save_adapter

        save_adapter(tmp, face_adapter)
    lora_file = lora_train.LORA_WEIGHT_NAME if state is not None else None
    info = {"identity": cfg.method, "base_model": cfg.model, "steps": steps, "lora": lora_file,
            "face_adapter": WEIGHTS_FILE if face_adapter is not None else None,
            "rank": cfg.lora.rank, "alpha": cfg.lora.alpha, "frames": cfg.frames, "height": cfg.height,
            "width": cfg.width, "config": saved}  # fmt: skip
    (tmp / ADAPTER_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    config.save(cfg, tmp / "config.yaml")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest
