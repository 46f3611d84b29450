"""The ``consisid`` backend: diffusers ``ConsisIDPipeline`` (CogVideoX-5B based, 49 frames, 720x480, 8 fps).

ConsisID is conditioned on the first reference image's face:

* ``id_cond`` (1, 1280): the ArcFace embedding of the insightface ``antelopev2`` pack (``glintr100``, raw,
  not normalised, 512-d) concatenated with the L2-normalised EVA02-CLIP-L-14-336 image embedding (768-d)
  of the aligned face;
* ``id_vit_hidden``: EVA02-CLIP's intermediate hidden states of that face;
* ``kps_cond``: the face's 5 keypoints (drawn on the conditioning image by the pipeline).

Faces come from ``ipvgkit.faces`` (``antelopev2`` backend: SCRFD-10G boxes and keypoints, ArcFace
embedding). EVA02-CLIP needs the ``consisid_eva_clip`` package and the weight file
``face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt`` of the hub repo ``BestWishYsh/ConsisID-preview``.
Differences from ConsisID's own preprocessing: the face is aligned to 512x512 with the ArcFace 5-point
template (``ipvgkit.faces.norm_crop``) instead of facexlib's, and no face-parsing mask is applied
(the whole grey-scale crop goes to EVA-CLIP).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.data.images import reference_problems
from ipvgkit.errors import InputError, MissingDependencyError, MissingWeightsError, UsageError
from ipvgkit.faces import files as face_files
from ipvgkit.models import frames, identity, runtime
from ipvgkit.models.base import GenerationRequest, ModelOptions, raise_problems
from ipvgkit.models.resolve import ResolvedModel
from ipvgkit.weights import ModelFile, find, register_file

CONSISID_HF = "BestWishYsh/ConsisID-preview"
EVA_CLIP = register_file(
    ModelFile(
        name="eva02-clip-l-14-336",
        relpath="consisid/EVA02_CLIP_L_336_psz14_s6B.pt",
        source=f"hub repo {CONSISID_HF}, file face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt (`hf download {CONSISID_HF}`)",
        hf_repo=CONSISID_HF,
        hf_path="face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt",
        description="EVA02-CLIP-L-14-336 visual tower: ConsisID's face feature extractor",
        used_by=("consisid",),
    )
)
# ConsisID also needs the antelopev2 pack that ipvgkit.faces declares: list this backend as a user
register_file(dataclasses.replace(face_files.ANTELOPEV2, used_by=("consisid",)))
EVA_MEAN = (0.48145466, 0.4578275, 0.40821073)
EVA_STD = (0.26862954, 0.26130258, 0.27577711)
FACE_CROP = 512


class ConsisIDBackend:
    """ConsisID checkpoints in diffusers format (``BestWishYsh/ConsisID-preview``)."""

    name = "consisid"

    def __init__(self, options: ModelOptions, resolved: ResolvedModel):
        runtime.validate_options(options)
        if options.lora:
            raise UsageError("the consisid backend takes no LoRA (its adapters are not in Wan's format)")
        self.options = options
        self.resolved = resolved
        identity.resolve_identity(options.identity, "consisid", True, {})
        self.device = runtime.resolve_device(options.device)
        self.torch_dtype, self.dtype_name = runtime.resolve_dtype(options.dtype, self.device)
        self.antelope_dir, self.eva_file = self.locate_face_weights()
        self._pipe: Any = None
        self._faces: Any = None
        self._eva: Any = None
        self._placement = ""

    def locate_face_weights(self) -> tuple[Path, Path]:
        """The antelopev2 pack folder and the EVA-CLIP file: in the model folder's ``face_encoder/``,
        the models directory or the HF cache; ``MissingWeightsError`` naming every missing file."""
        face_dir = self.resolved.folder / "face_encoder"
        ante_local = face_dir / "models" / "antelopev2"
        eva_local = face_dir / "EVA02_CLIP_L_336_psz14_s6B.pt"
        ante, ante_searched = (
            (ante_local, [str(ante_local)]) if ante_local.is_dir() else (None, [str(ante_local)])
        )
        eva, eva_searched = (eva_local, [str(eva_local)]) if eva_local.is_file() else (None, [str(eva_local)])
        if ante is None:
            ante, more = find(face_files.ANTELOPEV2, self.options.models_dir)
            ante_searched += more
        if eva is None:
            eva, more = find(EVA_CLIP, self.options.models_dir)
            eva_searched += more
        missing = []
        if ante is None:
            missing.append(
                ("insightface antelopev2 pack (scrfd_10g_bnkps.onnx, glintr100.onnx)", ante_searched)
            )
        if eva is None:
            missing.append(("EVA02_CLIP_L_336_psz14_s6B.pt", eva_searched))
        if missing:
            raise MissingWeightsError(
                " and ".join(m[0] for m in missing),
                [p for m in missing for p in m[1]],
                f"the ConsisID hub repo {CONSISID_HF} (folder face_encoder/: models/antelopev2/ and "
                f"EVA02_CLIP_L_336_psz14_s6B.pt): `hf download {CONSISID_HF}`",
            )
        return Path(ante), Path(eva)

    # ------------------------------------------------------------------ check
    def problems(self, request: GenerationRequest) -> list[str]:
        """Everything that keeps ``request`` from being generated with ConsisID."""
        out = []
        want = (frames.CONSISID_FRAMES, frames.CONSISID_HEIGHT, frames.CONSISID_WIDTH)
        got = (request.num_frames, request.height, request.width)
        if got != want:
            out.append(
                f"ConsisID generates {want[0]} frames at {want[2]}x{want[1]}; got {got[0]} frames at {got[2]}x{got[1]}"
            )
        if abs(request.fps - frames.CONSISID_FPS) > 1e-6:
            out.append(f"ConsisID videos are {frames.CONSISID_FPS:g} fps; got {request.fps:g}")
        if not request.ref_images:
            out.append("ConsisID needs a reference image with a face")
        out.extend(reference_problems(request.ref_images))
        if request.timeline:
            if request.timeline_mode != "prompt":
                out.append(
                    f"ConsisID has no timeline attention; use timeline mode 'prompt' (got {request.timeline_mode!r})"
                )
            out.extend(
                frames.timeline_problems(
                    request.timeline, request.timeline_units, request.num_frames, request.fps
                )
            )
        return out

    def check(self, request: GenerationRequest) -> None:
        """Raise ``CaseError`` naming the case when the request cannot be generated."""
        raise_problems(request, self.problems(request))

    # ------------------------------------------------------------------ face inputs
    def _eva_model(self) -> Any:
        if self._eva is None:
            if importlib.util.find_spec("consisid_eva_clip") is None:
                raise MissingDependencyError(
                    "the consisid backend needs the consisid_eva_clip package for EVA02-CLIP: pip install consisid_eva_clip"
                )
            from consisid_eva_clip import create_model_and_transforms

            model, _, _ = create_model_and_transforms(
                "EVA02-CLIP-L-14-336", str(self.eva_file), force_custom_clip=True
            )
            self._eva = model.visual.to(self.device, dtype=self.torch_dtype).eval()
        return self._eva

    def face_inputs(self, image_path: Path) -> tuple[Any, Any, Any, Any]:
        """``(id_cond, id_vit_hidden, kps_cond, face_image)`` of the largest face in the image."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        from ipvgkit.faces import aligned_crop, detect_largest, estimate_norm
        from ipvgkit.faces.insight import InsightFaceBackend

        if self._faces is None:  # ConsisID detects at 640x640
            self._faces = InsightFaceBackend(self.antelope_dir, device=self.device, det_size=(640, 640))
        rgb = np.asarray(identity.open_image(image_path))
        face = detect_largest(self._faces, rgb)
        if face is None or face.kps is None:
            raise InputError(f"no face found in reference image {image_path}")
        crop_bgr = self._faces.align(rgb, [face])[0]
        ante = torch.from_numpy(np.asarray(self._faces.recognizer.get_feat([crop_bgr]), dtype=np.float32))
        aligned = aligned_crop(rgb, face, FACE_CROP)  # RGB, 512x512 (gray-padded source if found on the pad)
        x = torch.from_numpy(aligned).permute(2, 0, 1)[None].float() / 255.0
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1).repeat(1, 3, 1, 1)
        eva = self._eva_model()
        size = int(getattr(eva, "image_size", 336))
        size = size[0] if isinstance(size, tuple | list) else size
        feats = F.interpolate(gray, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(EVA_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(EVA_STD).view(1, 3, 1, 1)
        feats = ((feats - mean) / std).to(self.device, dtype=self.torch_dtype)
        with torch.no_grad():
            cond_vit, vit_hidden = eva(feats, return_all_features=False, return_hidden=True, shuffle=False)
        cond_vit = cond_vit / cond_vit.norm(p=2, dim=1, keepdim=True)
        id_cond = torch.cat([ante.to(cond_vit), cond_vit], dim=-1)
        # keypoints in the aligned crop's coordinates (the pipeline draws them on the conditioning image)
        matrix = estimate_norm(np.asarray(face.kps, dtype=np.float32), FACE_CROP)
        kps_crop = np.c_[face.kps, np.ones(len(face.kps))] @ np.asarray(matrix, dtype=np.float64).T
        return id_cond, vit_hidden, torch.from_numpy(kps_crop.astype(np.float32)), Image.fromarray(aligned)

    # ------------------------------------------------------------------ generation
    def load(self) -> None:
        """Load the weights now (otherwise the first ``generate`` does); the runner calls it before the
        first case so that per-case times measure generation only."""
        self.pipeline()

    def pipeline(self) -> Any:
        """The loaded ConsisIDPipeline (loaded on first use)."""
        if self._pipe is None:
            from diffusers import ConsisIDPipeline

            try:
                pipe = ConsisIDPipeline.from_pretrained(self.resolved.folder, dtype=self.torch_dtype)
            except OSError as exc:
                raise MissingWeightsError(
                    f"{self.resolved.name}: {str(exc).splitlines()[0][:200]}", [str(self.resolved.folder)],
                    f"the hub repo {CONSISID_HF}",
                ) from exc  # fmt: skip
            pipe.set_progress_bar_config(disable=True)
            self._placement = runtime.place_pipeline(pipe, self.options, self.device)
            runtime.apply_speed_options(pipe, self.options)
            self._pipe = pipe
        return self._pipe

    def generate(self, request: GenerationRequest) -> np.ndarray:
        """Generate ``request``: uint8 RGB frames ``(49, 480, 720, 3)``."""
        import torch

        from ipvgkit.models.wan import to_uint8

        pipe = self.pipeline()  # the request was checked by the runner (check): trusted here
        id_cond, id_vit_hidden, kps, face_image = self.face_inputs(Path(request.ref_images[0]))
        events = request.timeline or []
        prompt = frames.fold_timeline_prompt(request.prompt, events) if events else request.prompt
        out = pipe(
            image=face_image, prompt=prompt, negative_prompt=request.negative_prompt, height=request.height,
            width=request.width, num_frames=request.num_frames, num_inference_steps=request.steps,
            guidance_scale=request.guidance, generator=torch.Generator(device="cpu").manual_seed(int(request.seed)),
            id_vit_hidden=id_vit_hidden, id_cond=id_cond, kps_cond=kps, output_type="np",
        )  # fmt: skip
        return to_uint8(out.frames[0])

    def describe(self) -> dict:
        """Settings to record beside the outputs."""
        return {
            "backend": self.name,
            "model": self.options.model,
            "model_folder": str(self.resolved.folder),
            "model_source": self.resolved.source,
            "pipeline": self.resolved.pipeline_class,
            "identity": "consisid",
            "face_weights": {"antelopev2": str(self.antelope_dir), "eva_clip": str(self.eva_file)},
            "dtype": self.dtype_name,
            "dtype_requested": self.options.dtype,
            "device": self.device,
            "placement": self._placement or None,
            "offload": self.options.offload,
            "vae_tiling": self.options.vae_tiling,
            "compile": self.options.compile,
            "cache": self.options.cache,
            "frames": frames.CONSISID_FRAMES,
            "size": [frames.CONSISID_WIDTH, frames.CONSISID_HEIGHT],
            "fps": frames.CONSISID_FPS,
            "note": "fp32 on CPU" if self.device == "cpu" and self.options.dtype != "fp32" else None,
        }
