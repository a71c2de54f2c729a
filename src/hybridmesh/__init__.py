"""hybridmesh: an integration platform for hybrid architectures."""

__version__ = "0.1.0"
