"""``--preset consisid`` end to end on tiny models: the no-face quirk flagged and counted, what ran recorded."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from ipvgkit.media import encode_video
from ipvgkit.stages.score import ScoreConfig, run_scoring
from tests.support.tiny_models import make_pack, make_tiny_clip, save_tiny_inception, square_image, tiny_ir


def _models(root):
    make_pack(root / "face_encoder" / "models" / "buffalo_l")  # ConsisID's checkpoint layout
    (root / "face_encoder").mkdir(exist_ok=True)
    torch.save(
        tiny_ir(seed=5).state_dict(), root / "face_encoder" / "glint360k_curricular_face_r101_backbone.bin"
    )
    make_tiny_clip(root / "data_process" / "clip-vit-base-patch32")
    save_tiny_inception(root / "inception" / "inception_v3_fid.pt")
    return root


def test_consisid_preset_flags_and_counts_faceless_videos(tmp_path):
    models = _models(tmp_path / "ckpts")
    ts, sub = tmp_path / "testset" / "id001", tmp_path / "sub" / "id001"
    ts.mkdir(parents=True)
    Image.fromarray(square_image(square=32, center=(160, 152), seed=1)).save(ts / "ref.png")
    for k in (1, 2):
        (ts / f"prompt{k}.txt").write_text(f"a person, take {k}", encoding="utf-8")
    faces = np.stack([square_image(square=32, center=(120 + 8 * k, 160), seed=k % 3) for k in range(9)])
    encode_video(faces, sub / "prompt1.mp4", fps=8)
    encode_video(np.zeros((9, 320, 320, 3), np.uint8), sub / "prompt2.mp4", fps=8)
    cfg = ScoreConfig(
        submission=tmp_path / "sub",
        cases=tmp_path / "testset",
        out=tmp_path / "out",
        preset="consisid",
        models_dir=models,
        report=False,
    )
    report = run_scoring(cfg)
    rows = {
        r["output_name"]: r
        for r in map(json.loads, (tmp_path / "out" / "scores.jsonl").read_text().splitlines())
    }
    blank = rows["id001/prompt2.mp4"]
    assert blank["no_face"] is True and rows["id001/prompt1.mp4"]["no_face"] is False
    for name in ("facesim_cur", "facesim_arc", "face_feat_dist"):
        assert blank["metrics"][name] == 0.0 and "quirk" in blank["extra"][name]
        assert rows["id001/prompt1.mp4"]["metrics"][name] > 0
    summary = report.summary
    assert summary["videos_no_face"] == 1
    assert len(summary["warnings"]) == 1 and "id001/prompt2.mp4" in summary["warnings"][0]
    clip = summary["metrics"]["clipscore"]
    assert clip["image_processor"] == "CLIPImageProcessorPil"
    assert clip["logit_scale"] == rows["id001/prompt1.mp4"]["extra"]["clipscore"]["logit_scale"]
