"""Video model backends behind one protocol (see ``ipvgkit.models.base``).

``load_backend(options)`` returns the backend for ``options.model``; nothing heavy (torch, diffusers) is
imported until it is called.
"""

from __future__ import annotations

from ipvgkit.models.base import GenerationRequest, ModelOptions, VideoBackend

__all__ = ["GenerationRequest", "ModelOptions", "VideoBackend", "load_backend"]


def load_backend(options: ModelOptions) -> VideoBackend:
    """See :func:`ipvgkit.models.factory.load_backend`."""
    from ipvgkit.models.factory import load_backend as _load

    return _load(options)
