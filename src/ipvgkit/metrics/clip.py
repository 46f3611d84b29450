"""CLIP-based metrics: ``clipscore`` (CLIP ViT-B/32 text-frame similarity) and ``aesthetic`` (LAION MLP).

Models are loaded from local folders in the transformers format (``save_pretrained`` layout) found via
:mod:`ipvgkit.weights`; a loaded model is shared between metrics that use the same folder (clipscore
and timeline_alignment both use ViT-B/32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.devices import resolve_device
from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.metrics.registry import register
from ipvgkit.weights import ModelFile, locate, register_file

CLIP_B32 = register_file(
    ModelFile(
        name="clip-vit-b-32",
        relpath="clip-vit-base-patch32",
        source="hf download openai/clip-vit-base-patch32 --local-dir <models-dir>/clip-vit-base-patch32",
        hf_repo="openai/clip-vit-base-patch32",
        hf_path="",
        description="CLIP ViT-B/32 (transformers format: config, weights, tokenizer, preprocessor)",
        used_by=("clipscore", "timeline_alignment"),
    )
)
CLIP_L14 = register_file(
    ModelFile(
        name="clip-vit-l-14",
        relpath="clip-vit-large-patch14",
        source="hf download openai/clip-vit-large-patch14 --local-dir <models-dir>/clip-vit-large-patch14",
        hf_repo="openai/clip-vit-large-patch14",
        hf_path="",
        description="CLIP ViT-L/14 image tower for the aesthetic predictor",
        used_by=("aesthetic",),
    )
)
AESTHETIC_MLP = register_file(
    ModelFile(
        name="laion-aesthetic-l14",
        relpath="sac+logos+ava1-l14-linearMSE.pth",
        source=(
            "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
            "sac+logos+ava1-l14-linearMSE.pth (save it in the models dir; OpenS2V-Eval's copy "
            "BestWishYsh/OpenS2V-Weight aesthetic-model.pth is accepted under that name too)"
        ),
        alt_relpaths=("aesthetic-model.pth",),
        hf_repo="camenduru/improved-aesthetic-predictor",
        hf_path="sac+logos+ava1-l14-linearMSE.pth",
        description="LAION improved aesthetic predictor MLP 768-1024-128-64-16-1 on CLIP ViT-L/14 embeddings",
        used_by=("aesthetic",),
    )
)

_LOADED: dict[tuple[str, str], ClipEncoder] = {}


def _image_processor_class():
    import transformers

    # The PIL implementation is the one the reference scripts used (the torchvision one resizes differently).
    return getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor


def l2n(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ClipEncoder:
    """A CLIP model + its processor from one local folder: L2-normalised image and text embeddings."""

    def __init__(self, path: Path, device: str = "cpu", need_text: bool = True):
        import torch
        from transformers import CLIPModel

        self.path = Path(path)
        self.device = resolve_device(device)
        self.model = CLIPModel.from_pretrained(str(self.path)).eval().to(self.device)
        self.image_processor = _image_processor_class().from_pretrained(str(self.path))
        self.tokenizer = None
        if need_text:
            from transformers import CLIPTokenizer

            self.tokenizer = CLIPTokenizer.from_pretrained(str(self.path))
        self.max_text = min(77, int(self.model.config.text_config.max_position_embeddings))
        self._torch = torch

    @classmethod
    def shared(cls, path: Path, device: str, need_text: bool = True) -> ClipEncoder:
        """One encoder per (folder, device) per process."""
        key = (str(Path(path).resolve()), resolve_device(device))
        enc = _LOADED.get(key)
        if enc is None or (need_text and enc.tokenizer is None):
            enc = cls(path, device, need_text=need_text)
            _LOADED[key] = enc
        return enc

    @staticmethod
    def _features(out: Any):
        return out if hasattr(out, "shape") else out.pooler_output

    def embed_images(self, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """``(N, D)`` L2-normalised image embeddings of RGB uint8 frames ``(N, H, W, 3)``."""
        torch = self._torch
        feats = []
        for s in range(0, len(frames), max(1, batch_size)):
            chunk = [np.ascontiguousarray(f) for f in frames[s : s + batch_size]]
            pix = self.image_processor(images=chunk, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode():
                f = self._features(self.model.get_image_features(pixel_values=pix))
            feats.append(f.float().cpu().numpy())
        if not feats:
            return np.zeros((0, int(self.model.config.projection_dim)))
        return l2n(np.concatenate(feats))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """``(M, D)`` L2-normalised text embeddings; each text truncated to 77 tokens."""
        torch = self._torch
        if self.tokenizer is None:
            raise RuntimeError("this encoder was loaded without a tokenizer")
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_text, return_tensors="pt"
        )
        tok = {k: v.to(self.device) for k, v in tok.items()}
        with torch.inference_mode():
            f = self._features(self.model.get_text_features(**tok))
        return l2n(f.float().cpu().numpy())


def clipscore_indices(n_frames: int, n: int = 16) -> list[int]:
    """ClipScore sampling of the 2025 code: ``int(i * n_frames / n)`` for i < n (repeats kept for short videos)."""
    if n_frames <= 0:
        return []
    return [min(n_frames - 1, int(i * n_frames / n)) for i in range(n)]


@register
class ClipScore(Metric):
    """CLIPScore: 100 x cosine(CLIP image embedding of a frame, CLIP text embedding of the prompt).

    CLIP ViT-B/32, 16 frames at ``int(i*n/16)``, prompt truncated to 77 tokens; per-video value = mean
    over frames. ``bgr_quirk`` feeds the frames with red and blue swapped, as the 2025 code did.
    """

    name = "clipscore"
    family = "clip"
    description = "100 x cosine(CLIP ViT-B/32 frame, prompt), 16 frames at int(i*n/16)"

    def __init__(self, n_frames: int = 16, bgr_quirk: bool = False):
        self.n_frames = n_frames
        self.bgr_quirk = bgr_quirk
        self.encoder: ClipEncoder | None = None
        self.batch_size = 16

    def options(self) -> dict:
        return {"n_frames": self.n_frames, "bgr_quirk": self.bgr_quirk}

    def model_files(self) -> list[ModelFile]:
        return [CLIP_B32]

    def frame_indices(self, n_frames: int) -> list[int]:
        return clipscore_indices(n_frames, self.n_frames)

    def load(self, ctx: MetricContext) -> None:
        self.bgr_quirk = bool(ctx.options.get("bgr_quirk", self.bgr_quirk))
        self.batch_size = ctx.batch_size
        self.encoder = ClipEncoder.shared(locate(CLIP_B32, ctx.models_dir), ctx.device)

    def compute(self, sample: VideoSample) -> MetricResult:
        return self.compute_batch([sample])[0]

    def compute_batch(self, samples: list[VideoSample]) -> list[MetricResult]:
        """All frames of all videos go through the image tower in batches; prompts are embedded once."""
        if self.encoder is None:
            raise RuntimeError("clipscore: load() was not called")
        frames, owner = [], []
        for k, s in enumerate(samples):
            f = s.frames(self.frame_indices(s.n_frames))
            frames.extend(f[..., ::-1] if self.bgr_quirk else f)
            owner.extend([k] * len(f))
        img = self.encoder.embed_images(np.stack(frames), self.batch_size) if frames else np.zeros((0, 1))
        prompts = sorted({s.case.prompt for s in samples})
        txt = dict(zip(prompts, self.encoder.embed_texts(prompts), strict=True))
        owner_a = np.asarray(owner)
        results = []
        for k, s in enumerate(samples):
            e = img[owner_a == k]
            if len(e) == 0:
                results.append(MetricResult(None, {"frames_scored": 0}, "no frames"))
                continue
            per_frame = 100.0 * (e @ txt[s.case.prompt])
            results.append(MetricResult(float(per_frame.mean()), {"frames_scored": len(e)}))
        return results


def load_aesthetic_mlp(path: Path):
    """The LAION aesthetic MLP as a list of (weight, bias) torch tensors, in layer order.

    The file is the state dict of ``nn.Sequential(Linear, Dropout, Linear, Dropout, Linear, Dropout,
    Linear, Linear)`` under ``layers.N.*`` (no activations between the linear layers).
    """
    import torch

    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith("layers.") and k.endswith(".weight")})
    if not idx:
        raise ValueError(f"{path}: not an aesthetic MLP state dict (no layers.N.weight keys)")
    return [(sd[f"layers.{i}.weight"].float(), sd[f"layers.{i}.bias"].float()) for i in idx]


@register
class Aesthetic(Metric):
    """LAION aesthetic score: CLIP ViT-L/14 image embedding (L2-normalised) -> linear MLP, 32 frames."""

    name = "aesthetic"
    family = "clip"
    description = "LAION aesthetic MLP on CLIP ViT-L/14 embeddings, mean over 32 frames (~4-7)"

    def __init__(self, n_frames: int = 32):
        self.n_frames = n_frames
        self.encoder: ClipEncoder | None = None
        self.layers: list | None = None
        self.batch_size = 16

    def options(self) -> dict:
        return {"n_frames": self.n_frames}

    def model_files(self) -> list[ModelFile]:
        return [CLIP_L14, AESTHETIC_MLP]

    def frame_indices(self, n_frames: int) -> list[int]:
        from ipvgkit.media import sample_indices

        return sample_indices(n_frames, self.n_frames)

    def load(self, ctx: MetricContext) -> None:
        self.batch_size = ctx.batch_size
        self.encoder = ClipEncoder.shared(locate(CLIP_L14, ctx.models_dir), ctx.device, need_text=False)
        self.layers = [
            (w.to(self.encoder.device), b.to(self.encoder.device))
            for w, b in load_aesthetic_mlp(locate(AESTHETIC_MLP, ctx.models_dir))
        ]

    def score_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """MLP scores of L2-normalised embeddings ``(N, 768)``."""
        import torch

        x = torch.as_tensor(np.asarray(emb, np.float32), device=self.encoder.device)
        with torch.inference_mode():
            for w, b in self.layers:
                x = x @ w.T + b
        return x[:, 0].double().cpu().numpy()

    def compute(self, sample: VideoSample) -> MetricResult:
        return self.compute_batch([sample])[0]

    def compute_batch(self, samples: list[VideoSample]) -> list[MetricResult]:
        if self.encoder is None or self.layers is None:
            raise RuntimeError("aesthetic: load() was not called")
        frames, owner = [], []
        for k, s in enumerate(samples):
            f = s.frames(self.frame_indices(s.n_frames))
            frames.extend(f)
            owner.extend([k] * len(f))
        if not frames:
            return [MetricResult(None, {"frames_scored": 0}, "no frames") for _ in samples]
        scores = self.score_embeddings(self.encoder.embed_images(np.stack(frames), self.batch_size))
        owner_a = np.asarray(owner)
        out = []
        for k in range(len(samples)):
            v = scores[owner_a == k]
            out.append(
                MetricResult(float(v.mean()), {"frames_scored": len(v)})
                if len(v)
                else MetricResult(None, {"frames_scored": 0}, "no frames")
            )
        return out
