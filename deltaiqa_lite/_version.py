"""The package version (the lowest layer: everything may import it)."""

__version__ = "0.1.0"
