"""The composition root: the service built from its settings, its loops, and the app factory."""
