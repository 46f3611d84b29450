"""Optical flow for the motion metrics: OpenCV Farneback, and RAFT-things through torchvision when present.

- Grey image: ``cv2.COLOR_BGR2GRAY`` applied to our RGB frames, as OpenS2V-Eval's ``get_motionscore.py``
  does (its decord reader gives RGB, it converts with the BGR code: R and B weights are swapped).
- Padding: RAFT's ``InputPadder`` "sintel" mode (VBench ``dynamic_degree.py``): each side padded to a
  multiple of 8 by edge replication, split evenly (the odd pixel goes to the bottom / right).
- Flows are computed once per video and shared through ``sample.cache`` under
  ``("flow", algorithm, pad, i, j)``, so two metrics asking for the same pairs with the same flow and the
  same padding (e.g. motion_amplitude and an 8 fps dynamic_degree on a size that is a multiple of 8)
  compute it once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from ipvgkit.procs import available_cpus
from ipvgkit.weights import ModelFile, find, locate, register_file

# cv2.calcOpticalFlowFarneback(prev, next, None, pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags)
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

FlowAlgorithm = Literal["raft-things", "opencv-farneback"]
FLOW_ALGORITHMS: tuple[str, ...] = ("raft-things", "opencv-farneback")
FlowChoice = Literal["auto", "raft-things", "opencv-farneback"]
FLOW_CHOICES: tuple[str, ...] = ("auto", *FLOW_ALGORITHMS)
RAFT_ITERS = 20  # VBench: model(image1, image2, iters=20, test_mode=True)

RAFT_LARGE = register_file(
    ModelFile(
        name="raft-large-c-t-v1",
        relpath="raft_large_C_T_V1-22a6c225.pth",
        source=(
            "https://download.pytorch.org/models/raft_large_C_T_V1-22a6c225.pth (torchvision "
            "Raft_Large_Weights.C_T_V1, the original RAFT-things weights ported; save it in the models dir)"
        ),
        description="RAFT large, trained on FlyingChairs + FlyingThings3D (VBench's raft-things)",
        used_by=("dynamic_degree",),
        extra_paths=("~/.cache/torch/hub/checkpoints/raft_large_C_T_V1-22a6c225.pth",),
    )
)

Pad = tuple[int, int, int, int]  # (left, right, top, bottom)
NO_PAD: Pad = (0, 0, 0, 0)


def sintel_pad(h: int, w: int) -> Pad:
    """RAFT ``InputPadder(mode="sintel")``: (left, right, top, bottom) so that both sides are multiples of 8."""
    pad_h = (((h // 8) + 1) * 8 - h) % 8
    pad_w = (((w // 8) + 1) * 8 - w) % 8
    return (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)


def apply_pad(img: np.ndarray, pad: Pad) -> np.ndarray:
    """``img`` (H, W[, C]) padded by edge replication (torch ``F.pad(mode="replicate")``)."""
    left, right, top, bottom = pad
    if pad == NO_PAD:
        return img
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (img.ndim - 2)
    return np.pad(img, widths, mode="edge")


def gray(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 frame -> 8-bit grey with ``COLOR_BGR2GRAY`` (OpenS2V-Eval's conversion, see module doc)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGR2GRAY)


def farneback(prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` float32 from ``prev_gray`` to ``next_gray``."""
    import cv2

    return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, **FARNEBACK)


def default_workers() -> int:
    """Threads for optical flow (OpenCV releases the GIL): the CPU count, at most 8."""
    return min(8, available_cpus())


@lru_cache(maxsize=1)
def torchvision_problem() -> str | None:
    """None when torchvision's RAFT imports, else why not (one line)."""
    try:
        from torchvision.models.optical_flow import raft_large  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"; the reason is recorded
        return f"torchvision not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return None


def resolve_flow(choice: str, models_dir) -> tuple[FlowAlgorithm, str | None]:
    """(the flow algorithm that will run, why RAFT was substituted or None) for ``choice``.

    ``auto``: RAFT-things when torchvision imports and its weights are found, else OpenCV Farneback with
    the reason recorded. An explicit ``raft-things`` that cannot run raises (MissingWeightsError or
    RuntimeError); ``opencv-farneback`` is a choice, not a substitution, but it is still named in every row.
    """
    if choice == "opencv-farneback":
        return "opencv-farneback", "opencv-farneback chosen (VBench uses RAFT-things)"
    problem = torchvision_problem()
    if choice == "raft-things":
        if problem:
            raise RuntimeError(f"dynamic_degree flow=raft-things: {problem}")
        locate(RAFT_LARGE, models_dir)
        return "raft-things", None
    if problem:
        return "opencv-farneback", f"RAFT-things not available: {problem}; OpenCV Farneback instead"
    path, _ = find(RAFT_LARGE, models_dir)
    if path is None:
        return (
            "opencv-farneback",
            f"RAFT-things weights {RAFT_LARGE.relpath} not found; OpenCV Farneback instead",
        )
    return "raft-things", None


def _state_dict_problem(own: dict, sd: object) -> str | None:
    """The first reason ``sd`` does not fit ``own`` key for key and shape for shape (None: it fits)."""
    if not isinstance(sd, dict):
        return f"a {type(sd).__name__}, not a state dict"
    for k, v in own.items():
        if k not in sd:
            return f"missing key {k!r}"
        if tuple(sd[k].shape) != tuple(v.shape):
            return f"key {k!r} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}"
    extra = [k for k in sd if k not in own]
    return f"unexpected key {extra[0]!r}" if extra else None


class RaftFlow:
    """torchvision ``raft_large`` with the ``C_T_V1`` state dict (loaded ``strict=True``), 20 updates.

    torchvision's RAFT needs frames of at least 128 x 128 (its correlation pyramid); a smaller video
    fails that metric with torchvision's message in its row.
    """

    def __init__(self, path, device: str = "cpu"):
        import torch
        from torchvision.models.optical_flow import raft_large

        from ipvgkit.devices import resolve_device
        from ipvgkit.errors import InputError

        self.device = resolve_device(device)
        self.model = raft_large(weights=None, progress=False)
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        problem = _state_dict_problem(self.model.state_dict(), sd)
        if problem:
            raise InputError(f"{path}: not torchvision raft_large weights ({problem})")
        self.model.load_state_dict(sd, strict=True)
        self.model.eval().to(self.device)
        self._torch = torch

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2)`` float32 from RGB uint8 ``a`` to ``b`` (both already padded to multiples of 8)."""
        torch = self._torch

        def t(x: np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float().to(self.device)
            return 2.0 * (x / 255.0) - 1.0  # RAFT's own input scaling (torchvision's preset does the same)

        with torch.inference_mode():
            flows = self.model(t(a), t(b), num_flow_updates=RAFT_ITERS)
        return flows[-1][0].permute(1, 2, 0).float().cpu().numpy()


_RAFT: dict[tuple[str, str], RaftFlow] = {}


def raft_model(models_dir, device: str) -> RaftFlow:
    """The RAFT model, loaded once per process."""
    path = locate(RAFT_LARGE, models_dir)
    key = (str(path), device)
    if key not in _RAFT:
        _RAFT[key] = RaftFlow(path, device)
    return _RAFT[key]


def pair_flows(
    sample,
    pairs: list[tuple[int, int]],
    workers: int = 1,
    pad: Pad = NO_PAD,
    raft: RaftFlow | None = None,
) -> list[np.ndarray]:
    """Flows for ``(i, j)`` frame pairs of frames padded by ``pad``, computed once per video and cached.

    ``raft`` given: RAFT-things on the padded RGB frames, else Farneback on the padded grey frames. With
    ``workers > 1`` the Farneback pairs are spread over threads (the same computation: numbers do not
    depend on ``workers``).
    """
    algo = "raft-things" if raft is not None else "opencv-farneback"
    key = ("flow", algo, tuple(pad))
    todo = [p for p in pairs if key + p not in sample.cache]
    if todo:
        idx = sorted({i for p in todo for i in p})
        frames = sample.frames(idx)
        if raft is not None:
            imgs = {i: apply_pad(f, pad) for i, f in zip(idx, frames, strict=True)}
            flows = [raft(imgs[i], imgs[j]) for i, j in todo]
        else:
            grays = {i: apply_pad(gray(f), pad) for i, f in zip(idx, frames, strict=True)}
            if workers > 1 and len(todo) > 1:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                    flows = list(pool.map(lambda p: farneback(grays[p[0]], grays[p[1]]), todo))
            else:
                flows = [farneback(grays[i], grays[j]) for i, j in todo]
        for p, f in zip(todo, flows, strict=True):
            sample.cache[key + p] = f
    return [sample.cache[key + p] for p in pairs]
