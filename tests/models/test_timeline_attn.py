"""Track 2 timeline control on tiny-wan: what each latent frame's queries attend to."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from ipvgkit.data.cases import Event
from ipvgkit.models import ModelOptions, frames, load_backend, timeline_attn

from .conftest import request

# 17 frames at 16 fps = 1.0625 s, 5 latent frames; 32x32 → 4 tokens per latent frame
EVENTS = [Event(0.0, 0.5, "a man walks into the room"), Event(0.5, 1.0625, "he waves at the camera")]


def _timeline_request(mode: str, events=EVENTS, **kw):
    return request(num_frames=17, timeline=list(events), timeline_units="seconds", timeline_mode=mode, **kw)


def _records(backend, req):
    backend.record_attention = True
    try:
        backend.generate(req)
    finally:
        backend.record_attention = False
    state = backend.last_timeline
    assert state is not None and state.records
    return state


def _group_weight(weights: torch.Tensor, frame: int, span: tuple[int, int], tpf: int = 4) -> torch.Tensor:
    """Attention weight each query token of latent ``frame`` puts on the tokens in ``span``."""
    return weights[frame * tpf : (frame + 1) * tpf, span[0] : span[1]].sum(dim=-1)


def test_context_is_global_then_events_padded_to_512(tiny_wan):
    pipe = tiny_wan.pipeline()
    ctx = timeline_attn.build_context(pipe, "a man", ["walks", "waves"], torch.device("cpu"), torch.float32)
    assert ctx.embeds.shape == (1, 512, 32)
    lengths = [len(pipe.tokenizer(t).input_ids) for t in ("a man", "walks", "waves")]
    assert [e - s for s, e in ctx.spans] == lengths
    assert ctx.spans[0][0] == 0 and ctx.spans[1][0] == ctx.spans[0][1] and ctx.spans[2][0] == ctx.spans[1][1]
    assert torch.all(ctx.token_group[ctx.spans[2][1] :] == 0)  # padding counts as global
    assert torch.all(ctx.embeds[0, ctx.spans[2][1] :] == 0)
    alone = timeline_attn.encode_texts(pipe, ["walks"], torch.device("cpu"), torch.float32)[0]
    assert torch.allclose(ctx.embeds[0, ctx.spans[1][0] : ctx.spans[1][1]], alone)  # encoded separately


def test_masked_frames_see_only_their_own_event(tiny_wan):
    state = _records(tiny_wan, _timeline_request("masked"))
    assign = frames.event_of_latent_frames(EVENTS, "seconds", 17, 16.0)
    assert assign == [0, 0, 0, 1, 1]
    glob, ev0, ev1 = state.context.spans
    # only the conditional passes are recorded: 2 steps x 2 blocks (the negative prompt pass is plain)
    assert len(state.records) == 4
    for w in state.records:
        assert w.shape == (5 * 4, 512)
        for frame, event in enumerate(assign):
            own, other = (ev0, ev1) if event == 0 else (ev1, ev0)
            assert torch.all(_group_weight(w, frame, other) == 0)  # exactly zero on the other event
            assert torch.all(_group_weight(w, frame, own) > 0)
            assert torch.all(_group_weight(w, frame, glob) > 0)
        assert torch.allclose(w.sum(dim=-1), torch.ones(20), atol=1e-5)


def test_masked_gap_frames_see_only_the_global_prompt(tiny_wan):
    events = [Event(0.0, 0.25, "walks in"), Event(0.8, 1.0625, "waves")]
    assign = frames.event_of_latent_frames(events, "seconds", 17, 16.0)
    assert -1 in assign
    state = _records(tiny_wan, _timeline_request("masked", events))
    _, ev0, ev1 = state.context.spans
    for w in state.records:
        for frame, event in enumerate(assign):
            if event == -1:
                assert torch.all(_group_weight(w, frame, ev0) == 0) and torch.all(
                    _group_weight(w, frame, ev1) == 0
                )


def test_soft_weights_are_low_but_nonzero_near_borders(tiny_wan):
    state = _records(tiny_wan, _timeline_request("soft"))
    _, ev0, ev1 = state.context.spans
    soft = frames.soft_event_weights(EVENTS, "seconds", 17, 16.0)
    for w in state.records:
        # latent frame 2 (pixels 5-8) straddles the border at t = 0.5 s: it mostly attends to event 0
        # tokens but keeps a non-zero share for event 1
        near_other = _group_weight(w, 2, ev1)
        assert torch.all(near_other > 0)
        assert torch.all(near_other < _group_weight(w, 2, ev0))
        # frame 0 is far from event 1: its share is tiny (the bias is log w ≈ -9)
        assert torch.all(_group_weight(w, 0, ev1) < 1e-3)
        assert torch.all(_group_weight(w, 0, ev1) < near_other)
    assert 0.05 < soft[2, 1] < 0.5


def test_unconditional_pass_and_restored_processors(tiny_wan):
    tiny_wan.generate(_timeline_request("masked"))
    pipe = tiny_wan.pipeline()
    for block in pipe.transformer.blocks:
        assert isinstance(block.attn2.processor, WanAttnProcessor)
    assert not pipe.transformer._forward_pre_hooks


def test_prompt_mode_folds_the_timeline_into_one_prompt(tiny_wan):
    folded = frames.fold_timeline_prompt("a man", EVENTS)
    assert folded == "a man. First, a man walks into the room; then, he waves at the camera."
    video = tiny_wan.generate(_timeline_request("prompt", prompt="a man"))
    assert tiny_wan.last_timeline is None  # no attention processor
    plain = tiny_wan.generate(request(num_frames=17, prompt=folded))
    assert np.array_equal(video, plain)


def test_modes_give_different_videos(tiny_wan):
    # float frames before the uint8 rounding: the tiny random model reacts only slightly to the soft bias
    videos = {m: tiny_wan._generate(tiny_wan.pipeline(), _timeline_request(m)) for m in timeline_attn.MODES}
    assert np.abs(videos["masked"] - videos["soft"]).max() > 0
    assert np.abs(videos["masked"] - videos["prompt"]).max() > 1e-2


@pytest.mark.parametrize("model", ["tiny-wan-i2v", "tiny-wan-vace"])
def test_timeline_on_i2v_and_vace(models_dir, tom_hanks, model):
    backend = load_backend(ModelOptions(model=model, models_dir=models_dir))
    state = _records(backend, _timeline_request("masked", ref_images=[tom_hanks]))
    n_lead = 1 if model == "tiny-wan-vace" else 0  # VACE prepends the reference image's latent frame
    assert state.bias.shape[0] == n_lead + 5
    _, ev0, ev1 = state.context.spans
    assign = [-1] * n_lead + [0, 0, 0, 1, 1]
    for w in state.records:
        assert w.shape[0] == (n_lead + 5) * 4  # I2V's image tokens are attended to separately, unmasked
        for frame, event in enumerate(assign):
            if event == 0:
                assert torch.all(_group_weight(w, frame, ev1) == 0)
            elif event == 1:
                assert torch.all(_group_weight(w, frame, ev0) == 0)
            else:
                assert torch.all(_group_weight(w, frame, ev0) == 0) and torch.all(
                    _group_weight(w, frame, ev1) == 0
                )
