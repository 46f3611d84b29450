"""Text conditioning of the Wan backends: the default negative prompt, the per-run prompt-embedding
cache and where the text encoder runs (``ModelOptions.text_encoder``).

* Negative prompt: a request without one (``None``) uses :data:`WAN_NEGATIVE_PROMPT`, the negative prompt
  of Wan's own examples (``sample_neg_prompt`` in Wan2.1's ``wan/configs/shared_config.py``; diffusers'
  Wan docs use its English translation). ``""`` means no negative prompt. Without classifier-free
  guidance (``guidance <= 1``) no negative prompt is encoded at all.
* Cache: every text (prompt, timeline event, negative prompt) is T5-encoded on its own, once per run,
  and kept (unpadded) in :class:`PromptCache`; the same negative prompt for 1000 cases is encoded once.
  Each text is encoded alone, so a cached embedding is the one a fresh run would compute.
* Placement (:class:`TextEncoderPlacement`): ``device`` keeps the encoder with the transformer (the
  diffusers default); ``cpu`` keeps it on the CPU (GPU memory for the transformer only; encoding is
  slower); ``offload`` keeps it on the CPU and moves it to the GPU only while a case's texts are encoded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from ipvgkit.errors import UsageError

WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
    "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
CACHE_SIZE = 64  # texts kept per run (about 4 MB each at 512x4096 bf16)


class TextEncoderPlacement(StrEnum):
    """Where the text encoder lives (module docstring)."""

    device = "device"
    cpu = "cpu"
    offload = "offload"


TEXT_ENCODER_PLACEMENTS = tuple(p.value for p in TextEncoderPlacement)


def check_placement(placement: str, offload: str) -> None:
    """``UsageError`` for an unknown placement, or one combined with whole-pipeline CPU offload."""
    if placement not in TEXT_ENCODER_PLACEMENTS:
        raise UsageError(
            f"unknown text_encoder placement {placement!r}; choose one of {', '.join(TEXT_ENCODER_PLACEMENTS)}"
        )
    if placement != TextEncoderPlacement.device and offload != "none":
        raise UsageError(
            f"--text-encoder {placement} cannot be combined with --offload {offload} (which already moves "
            "every component, the text encoder included); drop one of them"
        )


def negative_prompt_for(negative: str | None, guidance: float) -> tuple[str | None, str]:
    """The negative prompt a request runs with and how it was chosen: None without CFG."""
    if guidance <= 1.0:
        return None, f"none: no classifier-free guidance at guidance {guidance:g} <= 1"
    if negative is None:
        return WAN_NEGATIVE_PROMPT, "Wan's default negative prompt (pass --negative-prompt '' for none)"
    return negative, "given" if negative else "none (empty negative prompt given)"


class PromptCache:
    """Per-run cache of single-text T5 embeddings ``(len, D)`` (least recently used dropped first)."""

    def __init__(self, encode: Callable[[Sequence[str], Any, Any], list[Any]], size: int = CACHE_SIZE):
        self._encode = encode  # (texts, device, dtype) -> one unpadded (len, D) tensor per text
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, texts: Sequence[str], device: Any, dtype: Any) -> list[Any]:
        """The embeddings of ``texts`` on ``device`` in ``dtype``, each encoded alone on a miss."""
        out = []
        for text in texts:
            k = (text, str(device), str(dtype))
            if k in self._items:
                self.hits += 1
                self._items.move_to_end(k)
                out.append(self._items[k])
                continue
            self.misses += 1
            value = self._encode([text], device, dtype)[0]
            self._items[k] = value
            while len(self._items) > self.size:  # size 0: no caching at all
                self._items.popitem(last=False)
            out.append(value)
        return out

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._items)}


def place_text_encoder(pipe: Any, placement: str) -> None:
    """Put the text encoder where ``placement`` says, after the pipeline was placed."""
    if placement != TextEncoderPlacement.device and getattr(pipe, "text_encoder", None) is not None:
        pipe.text_encoder.to("cpu")


class encoding_placement:
    """Context manager: with ``offload``, the text encoder is on ``device`` only inside the block."""

    def __init__(self, pipe: Any, placement: str, device: Any):
        self.pipe, self.placement, self.device = pipe, placement, device

    def __enter__(self) -> None:
        if self.placement == TextEncoderPlacement.offload:
            self.pipe.text_encoder.to(self.device)

    def __exit__(self, *exc: object) -> None:
        if self.placement == TextEncoderPlacement.offload:
            self.pipe.text_encoder.to("cpu")
