"""training-agent: turns a project's image dataset into a trained, verified, recorded model."""

__version__ = "0.1.0"
