"""``load_backend``: the one entry point the generation runner uses to get a backend."""

from __future__ import annotations

from ipvgkit.errors import UsageError
from ipvgkit.models.base import ModelOptions, VideoBackend
from ipvgkit.models.resolve import backend_for, resolve_model
from ipvgkit.models.runtime import validate_options


def load_backend(options: ModelOptions) -> VideoBackend:
    """Resolve ``options.model`` (built-in tiny model, local diffusers folder or hub id) and return the
    backend that runs it: ``wan`` (WanPipeline / WanImageToVideoPipeline), ``wan-vace`` (WanVACEPipeline)
    or ``consisid`` (ConsisIDPipeline). Cheap: weights are loaded on the first ``generate``.

    Raises ``UsageError`` for a bad option or a backend that does not fit the model,
    ``MissingWeightsError`` for a hub id that is neither cached nor downloadable.
    """
    if not options.model:
        raise UsageError("no model given: pass --model (a hub id, a local diffusers folder or tiny-wan)")
    validate_options(options)
    resolved = resolve_model(options.model, options.models_dir)
    name = backend_for(resolved, options.backend)
    if options.adapter is not None and name != "wan":
        raise UsageError(
            f"--adapter (a face adapter) runs on Wan text-to-video models; {options.model} is {name}"
        )
    if name == "wan":
        from ipvgkit.models.wan import WanBackend

        return WanBackend(options, resolved)
    if name == "wan-vace":
        from ipvgkit.models.vace import WanVaceBackend

        return WanVaceBackend(options, resolved)
    from ipvgkit.models.consisid import ConsisIDBackend

    return ConsisIDBackend(options, resolved)
