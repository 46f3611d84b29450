"""ipvgkit: identity-preserving video generation toolkit (command ``ipvg``)."""

import logging as _logging

__version__ = "0.1.0"

# Optional torchao (``pip install ipvgkit[quant]``) is imported by diffusers at its own import; a
# torchao wheel built for another torch logs three warnings there (its C++ kernels, a torch pytree
# deprecation, diffusers' torchao tensor types) on every command. Errors still show.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
