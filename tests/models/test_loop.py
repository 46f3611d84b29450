"""The model-prediction step factored out of our loop (also meant for a training step)."""

from __future__ import annotations

import torch

from ipvgkit.models.loop import model_prediction


def test_model_prediction_is_one_transformer_call_on_reference_and_video(tiny_wan):
    pipe = tiny_wan.pipeline()
    model = pipe.transformer
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 3, 4, 4, generator=g)
    ref = torch.randn(1, 16, 2, 4, 4, generator=g)
    embeds = torch.randn(1, 12, 32, generator=g)
    t = torch.tensor(700.0)
    calls = []
    handle = model.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        with torch.no_grad():
            out = model_prediction(pipe, model, latents, t, embeds, ref)
            plain = model_prediction(pipe, model, latents, t, embeds)
    finally:
        handle.remove()
    assert len(calls) == 2
    with torch.no_grad():  # the same call written out: reference frames first, their output dropped
        full = model(
            hidden_states=torch.cat([ref, latents], dim=2), timestep=t.expand(1), encoder_hidden_states=embeds,
            return_dict=False,
        )[0]  # fmt: skip
    assert out.shape == latents.shape and torch.equal(out, full[:, :, 2:])
    assert not torch.equal(plain, out)  # the reference frames condition the video part


def test_model_prediction_has_gradients_for_training(tiny_wan):
    pipe = tiny_wan.pipeline()
    latents = torch.randn(1, 16, 3, 4, 4, requires_grad=True)
    out = model_prediction(pipe, pipe.transformer, latents, torch.tensor(500.0), torch.randn(1, 12, 32))
    out.square().mean().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    pipe.transformer.zero_grad(set_to_none=True)
