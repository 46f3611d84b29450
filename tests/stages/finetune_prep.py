"""A small real prepare folder for the finetune tests: pan clips over real face photos, crops, manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ipvgkit.assets import sample_image
from ipvgkit.data.manifest import ManifestEvent, Sample, sample_id, write_manifest
from ipvgkit.media import encode_video
from ipvgkit.media.synth import pan_frames

FACES = ("tom_hanks", "astronaut", "t1")


def face_embedding(name: str) -> np.ndarray:
    """The dlib embedding (128-d) of the largest face in the real photo ``name`` (what ``ipvg prepare``
    stores with the dlib backend)."""
    from ipvgkit.models.face_adapter import reference_embedding

    return reference_embedding(sample_image(name), "dlib", None)


def make_prep(
    folder: Path, n: int = 3, frames: int = 13, fps: float = 16.0, events: bool = False, faces: bool = False
) -> Path:
    """``n`` samples (one clip each, ``frames`` frames at ``fps``, 48x48; video paths absolute as prepare
    writes them; bucket 32x32x9 at 16 fps) with one reference crop; with ``faces`` each sample also has
    ``faces/ID.npy``, the dlib embedding of its source photo."""
    folder = Path(folder)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    samples = []
    for i in range(n):
        img = sample_image(FACES[i % len(FACES)])
        clip = pan_frames(img, n_frames=frames, height=48, width=48, travel=0.1 + 0.05 * i)
        video = encode_video(clip, folder / "videos" / f"v{i}.mp4", fps=fps)
        ref = folder / "refs" / f"r{i}.png"
        Image.fromarray(clip[0]).save(ref)
        dur = frames / fps
        evs = [
            ManifestEvent(0.0, dur / 2, "a person looks left"),
            ManifestEvent(dur / 2, dur, "a person smiles"),
        ]
        emb_rel = None
        if faces:
            emb_rel = f"faces/{i}.npy"
            (folder / "faces").mkdir(exist_ok=True)
            np.save(folder / emb_rel, face_embedding(FACES[i % len(FACES)]))
        samples.append(
            Sample(
                sample_id=sample_id("test", f"v{i}", 0, frames),
                source="test",
                identity_id=f"id{i % 2}",
                video=str(video),
                frame_start=0,
                frame_end=frames,
                fps=fps,
                t_start=0.0,
                t_end=dur,
                caption=f"a person number {i} in a video",
                events=evs if events else None,
                ref_images=[str(ref.relative_to(folder))],
                width=48,
                height=48,
                face_embedding=emb_rel,
            )  # fmt: skip
        )
    write_manifest(folder, samples)
    return folder
