"""ipvg finetune with memory.block_swap on tiny-wan: the same numbers as without it, said in the log."""

from __future__ import annotations

import pytest
import torch

from ipvgkit.errors import UsageError
from ipvgkit.progress import Recorder
from ipvgkit.stages import finetune_ckpt as ck
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import FaceAdapterSettings, MemorySettings

from .finetune_prep import make_prep
from .test_finetune import assert_same_lora, cfg, losses

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method", ["reference-concat", "face-adapter"])
def test_block_swap_trains_bitwise_like_without_it(models_dir, tmp_path, method):
    """3 steps (grad_accum 2, timeline events) with both blocks swapped give the losses and LoRA /
    face adapter of 3 steps without swap; the run says where the weights rest."""
    data = make_prep(tmp_path / "prep", events=True, faces=method == "face-adapter")
    common = dict(max_steps=3, grad_accum=2, gradient_checkpointing=True, method=method,
                  face_adapter=FaceAdapterSettings(lora=True))  # fmt: skip
    plain, swapped = tmp_path / "plain", tmp_path / "swapped"
    finetune(cfg(data, plain, models_dir, **common))
    rec = Recorder()
    res = finetune(cfg(data, swapped, models_dir, memory=MemorySettings(block_swap=2), **common), rec)
    assert losses(plain) == losses(swapped) and len(losses(plain)) == 3  # bitwise equal floats
    assert_same_lora(plain, swapped)
    if method == "face-adapter":
        from safetensors.torch import load_file

        a, b = (load_file(str(r / "final" / "face_adapter.safetensors")) for r in (plain, swapped))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [e[1] for e in rec.events if e[0] == "log"]  # 2 blocks of 6680 frozen fp32 parameters
    assert any(
        "block swap: the frozen weights of the last 2 of 2 blocks (53.44 kB) rest in CPU memory" in m
        and "nothing is saved" in m
        for m in logs
    )
    assert res.model["block_swap"] == 2


def test_resume_may_change_block_swap(prep, models_dir, tmp_path):
    straight, split = tmp_path / "a", tmp_path / "b"
    finetune(cfg(prep, straight, models_dir, max_steps=2, gradient_checkpointing=True))
    swap = MemorySettings(block_swap=1)
    finetune(cfg(prep, split, models_dir, max_steps=1, gradient_checkpointing=True, memory=swap))
    finetune(cfg(prep, split, models_dir, max_steps=2, gradient_checkpointing=True, resume="auto"))
    assert [r["step"] for r in ck.read_metrics(split)] == [1, 2]
    assert losses(straight) == losses(split)
    assert_same_lora(straight, split)


def test_block_swap_without_checkpointing_or_beyond_the_blocks_is_an_error(prep, models_dir, tmp_path):
    with pytest.raises(ValueError, match="memory.block_swap needs gradient_checkpointing: true"):
        cfg(prep, tmp_path / "r1", models_dir, memory=MemorySettings(block_swap=1))  # the config says it
    with pytest.raises(UsageError, match=r"memory.block_swap=3: the transformer has 2 blocks \(use 0..2\)"):
        finetune(
            cfg(
                prep,
                tmp_path / "r2",
                models_dir,
                gradient_checkpointing=True,
                memory=MemorySettings(block_swap=3),
            )
        )
    assert not any((tmp_path / r).exists() for r in ("r1", "r2"))


def test_validation_with_the_live_swapped_transformer_makes_the_same_videos(prep, models_dir, tmp_path):
    """Validation generates with the training transformer itself: with its blocks swapped (the hooks
    run under no_grad too) the videos and the training numbers are bitwise those of a run without."""
    from ipvgkit.stages import finetune_val as fv
    from ipvgkit.stages.finetune_val import ValidationSettings

    from .test_finetune_val import frames_of
    from .test_generate import write_testset_b

    val = ValidationSettings(every=2, cases=write_testset_b(tmp_path / "ts", n=1), steps=2)
    common = dict(max_steps=2, gradient_checkpointing=True, validation=val)
    finetune(cfg(prep, tmp_path / "a", models_dir, **common))
    finetune(cfg(prep, tmp_path / "b", models_dir, memory=MemorySettings(block_swap=2), **common))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    videos = [frames_of(fv.step_dir(tmp_path / r, 2) / "videos") for r in ("a", "b")]
    assert videos[0] == videos[1] and videos[0]
