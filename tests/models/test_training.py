"""The training protocol on tiny-wan: flow matching, reference-concat prediction, LoRA injection/files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ipvgkit.errors import UsageError
from ipvgkit.models import identity, lora_train
from ipvgkit.models.resolve import resolve_model
from ipvgkit.models.training import (
    Conditions,
    FlowMatchConfig,
    flow_loss,
    loss_weights,
    noisy_and_target,
    sample_sigmas,
)
from ipvgkit.models.wan_train import WanTraining


@pytest.fixture(scope="module")
def wan(models_dir):
    m = WanTraining(resolve_model("tiny-wan", models_dir), "cpu", torch.float32)
    m.load()
    return m


def test_sigma_sampling_matches_the_formulas():
    n = 2000
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    u = torch.rand(n, generator=g()).numpy().astype(np.float64)
    uni = sample_sigmas(FlowMatchConfig(timestep_sampling="uniform"), n, g(), 3.0).numpy()
    np.testing.assert_allclose(uni, np.clip(u, 1e-3, 1), rtol=1e-6)
    shifted = sample_sigmas(FlowMatchConfig(timestep_sampling="shifted"), n, g(), 3.0).numpy()
    np.testing.assert_allclose(shifted, np.clip(3 * u / (1 + 2 * u), 1e-3, 1), rtol=1e-5)
    assert shifted.mean() > uni.mean() + 0.1  # shift > 1 moves mass to high noise
    normal = torch.randn(n, generator=g()).numpy().astype(np.float64)
    cfg = FlowMatchConfig(timestep_sampling="logit-normal", logit_mean=0.5, logit_std=0.7)
    ln = sample_sigmas(cfg, n, g(), 3.0).numpy()
    np.testing.assert_allclose(ln, 1 / (1 + np.exp(-(normal * 0.7 + 0.5))), rtol=1e-5)


def test_loss_weights_and_loss():
    s = torch.tensor([0.1, 0.5, 0.9])
    np.testing.assert_allclose(loss_weights(FlowMatchConfig(loss_weighting="none"), s).numpy(), 1.0)
    np.testing.assert_allclose(
        loss_weights(FlowMatchConfig(loss_weighting="sigma-sqrt"), s).numpy(), [100, 4, 1 / 0.81], rtol=1e-5
    )
    cos = [2 / (math.pi * (1 - 2 * x + 2 * x * x)) for x in (0.1, 0.5, 0.9)]
    np.testing.assert_allclose(
        loss_weights(FlowMatchConfig(loss_weighting="cosmap"), s).numpy(), cos, rtol=1e-5
    )
    pred, target = torch.zeros(3, 2, 2), torch.ones(3, 2, 2) * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    cfg = FlowMatchConfig(loss_weighting="sigma-sqrt")
    assert float(flow_loss(pred, target, s, cfg)) == pytest.approx((100 * 1 + 4 * 4 + 9 / 0.81) / 3, rel=1e-5)


def test_bad_flow_config():
    with pytest.raises(ValueError, match="choose one of uniform"):
        FlowMatchConfig(timestep_sampling="cosine")
    with pytest.raises(ValueError, match="flow_shift"):
        FlowMatchConfig(flow_shift=0)


def test_noisy_and_target_is_rectified_flow():
    x0, e = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    s = torch.tensor([0.25, 1.0])
    xt, v = noisy_and_target(x0, e, s)
    np.testing.assert_allclose(xt[0].numpy(), (0.75 * x0[0] + 0.25 * e[0]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(xt[1].numpy(), e[1].numpy())
    np.testing.assert_allclose(v.numpy(), (e - x0).numpy())


def test_flow_shift_comes_from_the_scheduler(wan):
    assert wan.scheduler_flow_shift() == 3.0


def test_encode_video_latent_shape_and_determinism(wan):
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (2, 9, 32, 32, 3), dtype=np.uint8))
    z = wan.encode_video(frames)
    assert z.shape == (2, 16, 3, 4, 4)  # (F - 1) / 4 + 1 latent frames, 8x spatial
    assert torch.equal(z, wan.encode_video(frames))


def test_reference_concat_prediction(wan, tom_hanks, astronaut):
    g = torch.Generator().manual_seed(0)
    x0, e = torch.randn(1, 16, 3, 4, 4, generator=g), torch.randn(1, 16, 3, 4, 4, generator=g)
    text = wan.encode_text(["a man"])
    s = torch.tensor([0.6])
    refs = wan.encode_reference([[identity.open_image(tom_hanks)]], 32, 32)
    other = wan.encode_reference([[identity.open_image(astronaut)]], 32, 32)
    assert refs.shape == (1, 16, 1, 4, 4)
    with torch.no_grad():
        pred, target = wan.predict(x0, e, s, Conditions(text, refs))
        pred_other, _ = wan.predict(x0, e, s, Conditions(text, other))
        plain, _ = wan.predict(x0, e, s, Conditions(text))
        # the same denoiser call written out: clean reference frame first, timestep 1000 sigma
        xt = 0.4 * x0 + 0.6 * e
        direct = wan.transformer(
            hidden_states=torch.cat([refs, xt], 2), timestep=torch.tensor([600.0]), encoder_hidden_states=text,
            return_dict=False,
        )[0]  # fmt: skip
    assert pred.shape == x0.shape  # reference frame excluded from the prediction (and so from the loss)
    torch.testing.assert_close(pred, direct[:, :, 1:])
    torch.testing.assert_close(target, e - x0)
    assert not torch.allclose(pred, pred_other)  # the reference conditions the prediction
    assert not torch.allclose(pred, plain)


def test_lora_injection_is_a_no_op_at_init_and_trains_only_lora(models_dir):
    m = WanTraining(resolve_model("tiny-wan", models_dir), "cpu", torch.float32)
    m.load(text=False, vae=False)
    x = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    ctx = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = m.transformer(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=ctx)[0]
    layers = lora_train.inject_lora(m.transformer, 4, 4.0, ["to_q", "attn2.to_k"])
    assert "blocks.0.attn1.to_q" in layers and "blocks.1.attn2.to_k" in layers
    assert "blocks.0.attn1.to_k" not in layers
    with torch.no_grad():
        after = m.transformer(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=ctx)[0]
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    names = [n for n, p in m.transformer.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert len(names) == 2 * len(layers)  # A and B of every adapted layer


def test_lora_target_matching_nothing_lists_what_exists(models_dir):
    m = WanTraining(resolve_model("tiny-wan", models_dir), "cpu", torch.float32)
    m.load(text=False, vae=False)
    with pytest.raises(UsageError, match="'to_qq' matches no linear layer; existing: .*blocks.N.attn1.to_q"):
        lora_train.inject_lora(m.transformer, 4, 4.0, ["to_q", "to_qq"])


def test_only_text_to_video_models_train(models_dir):
    with pytest.raises(UsageError, match="WanImageToVideoPipeline"):
        WanTraining(resolve_model("tiny-wan-i2v", models_dir), "cpu", torch.float32)


def test_lora_from_a_gathered_full_state_equals_the_peft_state(models_dir):
    m = WanTraining(resolve_model("tiny-wan", models_dir), "cpu", torch.float32)
    m.load(text=False, vae=False)
    lora_train.inject_lora(m.transformer, 2, 2.0, ["to_v"])
    direct = lora_train.diffusers_state(m.transformer)
    gathered = lora_train.lora_from_full_state(m.transformer.state_dict())
    assert direct.keys() == gathered.keys() and len(direct) == 8  # 2 blocks x 2 attentions x (A, B)
    assert all(torch.equal(direct[k], gathered[k]) for k in direct)


def test_training_predicts_what_the_generation_step_predicts(wan, models_dir, tom_hanks):
    """The same prediction as generation's step (loop.model_prediction on a WanPipeline loaded by diffusers)
    for the noised latents at timestep 1000 sigma, with the reference frame prepended."""
    from diffusers import WanPipeline

    from ipvgkit.models.loop import model_prediction

    pipe = WanPipeline.from_pretrained(models_dir / "tiny-wan", dtype=torch.float32)
    g = torch.Generator().manual_seed(4)
    x0, e = torch.randn(1, 16, 3, 4, 4, generator=g), torch.randn(1, 16, 3, 4, 4, generator=g)
    s = torch.tensor([0.3])
    text = wan.encode_text(["a man waves"])
    refs = wan.encode_reference([[identity.open_image(tom_hanks)]], 32, 32)
    with torch.no_grad():
        pred, _ = wan.predict(x0, e, s, Conditions(text, refs))
        xt = (1 - s.view(1, 1, 1, 1, 1)) * x0 + s.view(1, 1, 1, 1, 1) * e
        gen = model_prediction(pipe, pipe.transformer, xt, torch.tensor(300.0), text, refs)
    torch.testing.assert_close(pred, gen.float(), rtol=0, atol=0)
