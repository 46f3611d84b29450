"""Command-line interface: thin typer commands over the library functions in ``ipvgkit.stages``."""
