"""tfbuild: Make for TensorFlow deployment artifacts."""

__version__ = "0.4.0"
