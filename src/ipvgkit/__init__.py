"""ipvgkit: identity-preserving video generation toolkit (command ``ipvg``)."""

import logging as _logging

__version__ = "0.1.0"


def _drop_torchao_import_noise(record: _logging.LogRecord) -> bool:
    """torchao (optional: ``memory.quantize``; diffusers imports it whenever it is installed) logs at
    import that its CUDA-only kernels do not load on a CPU torch, torch warns about the enums it
    registers, and diffusers that it lacks an older release's tensor types: none of it concerns ipvg,
    so those lines alone are dropped (the loggers' other messages pass)."""
    msg = record.getMessage()
    return not (
        (msg.startswith("Failed to load") and ".so" in msg)
        or "register_constant()" in msg
        or msg.startswith("Unable to import `torchao` Tensor objects")
    )


for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    _logging.getLogger(_name).addFilter(_drop_torchao_import_noise)
