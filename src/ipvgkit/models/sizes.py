"""Settings of the Wan backends that depend on the video size: the scheduler's flow shift and VAE tiling.

* Flow shift (``ModelOptions.flow_shift``, ``--flow-shift``): the shift of Wan's flow-matching schedule
  (``flow_shift`` of ``UniPCMultistepScheduler``, ``shift`` of ``FlowMatchEulerDiscreteScheduler``).
  Unset, a Wan 2.1 checkpoint uses the value of Wan's and diffusers' examples for the size: 3.0 below
  720p, 5.0 at 720p and above (``# 5.0 for 720P, 3.0 for 480P`` in diffusers' ``WanPipeline`` example).
  A Wan 2.2 checkpoint (two experts or per-token timesteps) keeps its scheduler's own value (Wan 2.2
  ships other shifts, e.g. 12.0 for T2V-A14B). Either way the value used and how it was chosen are
  recorded.
* VAE tiling (``ModelOptions.vae_tiling``): unset, it is on at 720p and above (a 720x1280x81 decode
  needs tens of GB untiled) and off below; explicit ``True``/``False`` wins.

"720p and above" means the short side is at least :data:`HD_SHORT_SIDE` pixels.
"""

from __future__ import annotations

from typing import Any

from ipvgkit.errors import UsageError

HD_SHORT_SIDE = 720
FLOW_SHIFT_SD = 3.0  # below 720p
FLOW_SHIFT_HD = 5.0  # 720p and above
SHIFT_KEYS = ("flow_shift", "shift")  # UniPC / DPM++ / ...; FlowMatchEuler


def is_hd(height: int, width: int) -> bool:
    return min(height, width) >= HD_SHORT_SIDE


def _size(height: int, width: int) -> str:
    return f"{width}x{height}"


def _shift_key(scheduler: Any) -> str | None:
    return next((k for k in SHIFT_KEYS if k in scheduler.config), None)


def is_wan22(pipe: Any) -> bool:
    cfg = pipe.config
    return cfg.get("boundary_ratio") is not None or bool(cfg.get("expand_timesteps", False))


def flow_shift_for(requested: float | None, pipe: Any, height: int, width: int) -> tuple[float | None, str]:
    """The flow shift a request runs with and how it was chosen (None when the scheduler has none)."""
    key = _shift_key(pipe.scheduler)
    if requested is not None:
        if requested <= 0:
            raise UsageError(f"flow_shift must be > 0, got {requested}")
        if key is None:
            raise UsageError(
                f"--flow-shift: this model's scheduler ({type(pipe.scheduler).__name__}) has no flow shift"
            )
        return float(requested), "given (--flow-shift)"
    if key is None:
        return None, f"not applicable: {type(pipe.scheduler).__name__} has no flow shift"
    if is_wan22(pipe):
        value = float(pipe.scheduler.config[key])
        return value, "the Wan 2.2 checkpoint's own scheduler value (the per-size rule is Wan 2.1's)"
    hd = is_hd(height, width)
    value = FLOW_SHIFT_HD if hd else FLOW_SHIFT_SD
    which = "720p or more" if hd else "below 720p"
    return value, (
        f"derived from the size {_size(height, width)} ({which}; Wan's examples: {FLOW_SHIFT_SD:g} below 720p, "
        f"{FLOW_SHIFT_HD:g} at 720p)"
    )


def apply_flow_shift(pipe: Any, value: float | None) -> None:
    """Give ``pipe`` a scheduler with flow shift ``value`` (a new one only when it changes)."""
    key = _shift_key(pipe.scheduler)
    if value is None or key is None or float(pipe.scheduler.config[key]) == float(value):
        return
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **{key: float(value)})


def vae_tiling_for(requested: bool | None, height: int, width: int) -> tuple[bool, str]:
    """Whether the VAE tiles for this size and why."""
    if requested is not None:
        return bool(requested), "given (--vae-tiling)" if requested else "given (--no-vae-tiling)"
    if is_hd(height, width):
        return (
            True,
            f"on by default at 720p and above ({_size(height, width)}; --no-vae-tiling to turn it off)",
        )
    return False, f"off by default below 720p ({_size(height, width)})"


def apply_vae_tiling(pipe: Any, on: bool) -> None:
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        if on:
            raise UsageError("vae_tiling: this model's VAE has no tiling support; pass --no-vae-tiling")
        return
    if on:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
