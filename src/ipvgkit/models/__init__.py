"""Video model backends behind one protocol (see ``ipvgkit.models.base``)."""
