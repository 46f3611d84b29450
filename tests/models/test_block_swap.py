"""Block swap (memory.block_swap) on the tiny Wan transformer: real copies, same gradients."""

from __future__ import annotations

import pytest
import torch

from ipvgkit.errors import UsageError
from ipvgkit.models import lora_train
from ipvgkit.models.resolve import resolve_model
from ipvgkit.models.wan_train import WanTraining


def trained(models_dir, checkpointing: bool = True) -> WanTraining:
    """tiny-wan's transformer (2 blocks) with a LoRA whose B is non-zero (so every LoRA tensor gets a
    gradient), frozen base weights, fp32 on the CPU."""
    model = WanTraining(resolve_model("tiny-wan", models_dir), "cpu", torch.float32)
    model.load(text=False, vae=False)
    torch.manual_seed(0)
    lora_train.inject_lora(model.transformer, 4, 4.0, ["to_q", "to_k", "to_v", "to_out.0"])
    for name, p in model.transformer.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.transformer.train()
    return model


def step(model: WanTraining) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward + backward on fixed inputs: the loss and the LoRA gradients."""
    model.transformer.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 3, 4, 4, generator=g)
    text = torch.randn(1, 8, model.transformer.config.text_dim, generator=g)
    out = model.transformer(x, torch.tensor([500.0]), text, return_dict=False)[0]
    loss = (out.float() - x).pow(2).mean()
    loss.backward()
    model.release()
    grads = {n: p.grad.clone() for n, p in model.transformer.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def test_the_last_n_blocks_are_swapped():
    from ipvgkit.models.block_swap import swapped_indices

    assert swapped_indices(5, 2) == [3, 4]  # the last N
    assert swapped_indices(5, 0) == []


@pytest.mark.parametrize("n", [1, 2])
def test_swapped_blocks_give_bitwise_equal_loss_and_gradients(models_dir, n):
    plain, swapped = trained(models_dir), trained(models_dir)
    swap = swapped.enable_block_swap(n)
    assert swap.indices == list(range(2 - n, 2)) and swapped.describe()["block_swap"] == n
    for _ in range(2):  # a second step starts from the weights at rest
        la, ga = step(plain)
        lb, gb = step(swapped)
        assert torch.equal(la, lb)
        assert ga.keys() == gb.keys() and len(ga) == 2 * 2 * 4 * 2  # blocks x attentions x targets x (A, B)
        for k in ga:
            assert torch.equal(ga[k], gb[k]), k
            assert ga[k].abs().sum() > 0, k


def test_weights_rest_on_the_cpu_copy_and_visit_as_a_new_tensor(models_dir):
    model = trained(models_dir)
    blocks = model.transformer.blocks
    trainable = {n: (p, p.data_ptr()) for n, p in model.transformer.named_parameters() if p.requires_grad}
    swap = model.enable_block_swap(1)
    assert swap.nbytes == sum(
        p.numel() * 4 for p in blocks[1].parameters() if not p.requires_grad
    )  # every frozen tensor of block 1 (fp32)
    rest = {i: blocks[i].attn1.to_q.base_layer.weight for i in (0, 1)}
    rest_ptr = {i: w.data_ptr() for i, w in rest.items()}
    seen: dict[int, list[tuple[int, bool]]] = {0: [], 1: []}
    for i in (0, 1):  # what the layer sees inside the block's forward

        def record(module, args, i=i):
            seen[i].append((module.weight.data_ptr(), module.weight is rest[i]))

        blocks[i].attn1.to_q.base_layer.register_forward_pre_hook(record)
    step(model)
    # forward + the backward pass's recomputation (gradient checkpointing): two visits each
    assert len(seen[0]) == len(seen[1]) == 2 and swap.loads == 2
    assert all(ptr == rest_ptr[0] and same for ptr, same in seen[0])  # block 0 is not swapped
    assert all(ptr != rest_ptr[1] and not same for ptr, same in seen[1])  # a device copy, not the rest
    assert blocks[1].attn1.to_q.base_layer.weight is rest[1]  # back at rest
    assert not any(r.resident for r in swap.resting.values())
    for name, p in model.transformer.named_parameters():
        if p.requires_grad:  # the optimizer's tensors: same objects, same storage, on the device
            assert p is trainable[name][0] and p.data_ptr() == trainable[name][1], name
            assert p.grad is not None


def test_block_swap_needs_gradient_checkpointing_and_at_most_the_blocks(models_dir):
    with pytest.raises(UsageError, match="memory.block_swap needs gradient_checkpointing: true"):
        trained(models_dir, checkpointing=False).enable_block_swap(1)
    with pytest.raises(UsageError, match=r"memory.block_swap=3: the transformer has 2 blocks"):
        trained(models_dir).enable_block_swap(3)


def test_remove_puts_the_weights_back_for_good(models_dir):
    plain, model = trained(models_dir), trained(models_dir)
    swap = model.enable_block_swap(2)
    swap.remove()
    model.block_swap = None
    w = model.transformer.blocks[1].attn1.to_q.base_layer.weight
    assert not w.requires_grad and isinstance(w, torch.nn.Parameter)
    assert torch.equal(step(plain)[0], step(model)[0])
    assert model.transformer.blocks[1].attn1.to_q.base_layer.weight is w  # no hooks left


def test_quantised_frozen_weights_are_swapped_as_they_are(models_dir):
    """torchao int8 base weights (memory.quantize's kind of tensor subclass) rest and visit quantised,
    with the same loss and gradients as without swap."""
    tq = pytest.importorskip("torchao.quantization")

    def quantised() -> WanTraining:
        model = trained(models_dir)
        tq.quantize_(
            model.transformer.blocks,
            tq.Int8WeightOnlyConfig(),
            filter_fn=lambda m, fqn: fqn.endswith("base_layer"),
        )
        return model

    plain, swapped = quantised(), quantised()
    w = swapped.transformer.blocks[1].attn1.to_q.base_layer.weight
    assert type(w) is not torch.nn.Parameter and w.dtype == torch.float32  # a subclass (int8 inside)
    swapped.enable_block_swap(2)
    la, ga = step(plain)
    lb, gb = step(swapped)
    assert torch.equal(la, lb) and all(torch.equal(ga[k], gb[k]) for k in ga)
    assert type(swapped.transformer.blocks[1].attn1.to_q.base_layer.weight) is type(w)


def test_a_no_grad_forward_visits_once_and_rests(models_dir):
    """Generation (validation with the live transformer) runs under no_grad: one visit per block."""
    plain, model = trained(models_dir), trained(models_dir)
    swap = model.enable_block_swap(2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 16, 3, 4, 4, generator=g)
    text = torch.randn(1, 8, model.transformer.config.text_dim, generator=g)
    with torch.no_grad():
        a = plain.transformer(x, torch.tensor([900.0]), text, return_dict=False)[0]
        b = model.transformer(x, torch.tensor([900.0]), text, return_dict=False)[0]
    assert torch.equal(a, b) and swap.loads == 2
    assert not any(r.resident for r in swap.resting.values())
