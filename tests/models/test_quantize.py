"""memory.quantize: torchao int8 / fp8 frozen base weights of a LoRA-adapted tiny Wan transformer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchao.quantization import Int8Tensor
from torchao.utils import TorchAOBaseTensor

from ipvgkit.errors import UsageError
from ipvgkit.models import lora_train
from ipvgkit.models.quantize import check_supported, quantizable, quantize_frozen

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def adapted(models_dir: Path, seed: int = 0) -> torch.nn.Module:
    """The tiny-wan transformer (fp32) with a rank-4 LoRA on the attention projections, B non-zero so
    that the LoRA A matrices get gradients too."""
    from diffusers import WanTransformer3DModel

    from ipvgkit.models.tiny import materialise_tiny

    t = WanTransformer3DModel.from_pretrained(materialise_tiny("tiny-wan", models_dir) / "transformer")
    torch.manual_seed(seed)
    lora_train.inject_lora(t, 4, 4.0, ["to_q", "to_k", "to_v", "to_out.0"])
    with torch.no_grad():
        for n, p in t.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    return t


def block_linears(t: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every nn.Linear under blocks. that is no LoRA A/B (written here independently of the rule)."""
    return {
        n: m
        for n, m in t.named_modules()
        if isinstance(m, torch.nn.Linear) and n.startswith("blocks.") and ".lora_" not in n
    }


def test_frozen_block_linears_become_int8_tensors_and_the_lora_does_not(models_dir):
    t = adapted(models_dir)
    frozen = block_linears(t)
    assert len(frozen) == 2 * 10  # 2 blocks x (8 attention projections + 2 feed-forward layers)
    assert set(quantizable(t)) == set(frozen)
    report = quantize_frozen(t, "int8", CPU)
    assert report.count == 20
    for n, m in frozen.items():
        assert isinstance(m.weight, Int8Tensor) and isinstance(m.weight, TorchAOBaseTensor), n
        assert m.weight.qdata.dtype == torch.int8 and not m.weight.requires_grad, n
    for n, p in t.named_parameters():
        if ".lora_A." in n or ".lora_B." in n:
            assert type(p) is torch.nn.Parameter and p.requires_grad and p.dtype == torch.float32, n
    for n, m in t.named_modules():  # embedders and the output head stay at the base dtype
        if isinstance(m, torch.nn.Linear) and not n.startswith("blocks."):
            assert type(m.weight) is torch.nn.Parameter and m.weight.dtype == torch.float32, n
    ignored = set(t._ddp_params_and_buffers_to_ignore)  # DDP does not broadcast the quantised weights
    assert ignored == {f"{n}.weight" for n in frozen}


def test_int8_weights_are_the_rows_rounded_and_about_4x_smaller_than_fp32(models_dir):
    t = adapted(models_dir)
    dense = {n: m.weight.detach().clone() for n, m in block_linears(t).items()}
    fp32_bytes = sum(w.numel() * 4 for w in dense.values())
    report = quantize_frozen(t, "int8", CPU)
    measured = 0
    for n, m in block_linears(t).items():
        w = m.weight
        measured += sum(x.numel() * x.element_size() for x in (w.qdata, w.scale, w.zero_point))
        # symmetric per-row int8: every weight within half a step (row max / 127) of the original
        step = dense[n].abs().amax(dim=1, keepdim=True) / 127
        assert ((w.dequantize() - dense[n]).abs() <= step / 2 + 1e-7).all(), n
    assert report.bytes_before == fp32_bytes and report.bytes_after == measured
    # int8 data (1 of fp32's 4 bytes) + a float32 scale and an int8 zero point per output row
    rows = sum(w.shape[0] for w in dense.values())
    assert measured == sum(w.numel() for w in dense.values()) + rows * 5
    assert 3.2 < fp32_bytes / measured < 4.0
    assert "20 frozen linear weights" in report.note() and "3.33x smaller" in report.note()


def test_gradients_flow_to_the_lora_through_int8_base_layers(models_dir):
    torch.manual_seed(1)
    x = torch.randn(1, 16, 3, 4, 4)
    ctx = torch.randn(1, 8, 32)
    t_step = torch.tensor([500.0])

    def grads(quantize: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = adapted(models_dir)
        if quantize:
            quantize_frozen(t, "int8", CPU)
        out = t(x, t_step, ctx, return_dict=False)[0]
        out.square().mean().backward()
        return out.detach(), {n: p.grad for n, p in t.named_parameters() if p.requires_grad}

    out_q, g_q = grads(True)
    out_d, g_d = grads(False)
    assert g_q.keys() == g_d.keys() and len(g_q) == 2 * 8 * 2  # lora_A/B of 8 projections x 2 blocks
    for n in g_q:
        assert g_q[n] is not None and g_q[n].abs().sum() > 0, n
        # close to the gradient through the dense weights, but not the same numbers
        rel = float((g_q[n] - g_d[n]).norm() / g_d[n].norm())
        assert 0 < rel < 0.1, (n, rel)
    assert not torch.equal(out_q, out_d) and torch.allclose(out_q, out_d, atol=0.05)


def test_input_gradient_goes_through_the_quantised_weight():
    torch.manual_seed(2)
    holder = torch.nn.Module()
    holder.blocks = torch.nn.ModuleList([torch.nn.Linear(32, 48)])  # named like a block's linear
    holder.requires_grad_(False)
    assert quantizable(holder) == ["blocks.0"]
    quantize_frozen(holder, "int8", CPU)
    lin = holder.blocks[0]
    x = torch.randn(5, 32, requires_grad=True)
    lin(x).sin().sum().backward()
    xd = x.detach().clone().requires_grad_(True)
    torch.nn.functional.linear(xd, lin.weight.dequantize(), lin.bias).sin().sum().backward()
    assert torch.allclose(x.grad, xd.grad, atol=1e-5)


def test_fp8_without_a_cuda_gpu_is_one_usage_line(models_dir):
    with pytest.raises(UsageError) as err:
        check_supported("fp8", CPU)
    msg = str(err.value)
    assert "\n" not in msg and "compute capability >= 8.9" in msg and "device is cpu" in msg
    t = adapted(models_dir)
    with pytest.raises(UsageError, match="fp8"):
        quantize_frozen(t, "fp8", CPU)
    assert all(type(m.weight) is torch.nn.Parameter for m in block_linears(t).values())  # untouched


def test_sharded_runs_and_unknown_kinds_are_refused():
    with pytest.raises(UsageError, match="unsharded runs only.*FSDP and DeepSpeed"):
        check_supported("int8", CPU, sharded=True)
    with pytest.raises(UsageError, match="one of none, int8, fp8"):
        check_supported("int4", CPU)
    check_supported("none", CPU, sharded=True)  # nothing asked: nothing refused


def test_without_torchao_it_is_a_missing_dependency_with_the_pip_line():
    code = (
        "import sys; sys.modules['torchao'] = None\n"  # as if torchao were not installed
        "import torch\n"
        "from ipvgkit.errors import MissingDependencyError\n"
        "from ipvgkit.models.quantize import check_supported\n"
        "try:\n    check_supported('int8', torch.device('cpu'))\n"
        "except MissingDependencyError as e:\n    print('MISSING', e)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MISSING memory.quantize needs torchao: pip install 'ipvgkit[quant]'" in r.stdout
