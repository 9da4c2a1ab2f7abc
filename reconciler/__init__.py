"""reconciler: manage Stellantis fleet callbacks and preconditioning programs as code."""

__version__ = "0.1.0"
