"""ipvgkit: identity-preserving video generation toolkit (command ``ipvg``)."""

__version__ = "0.1.0"
