"""fer-bench: train, evaluate and compare facial expression recognition methods under one protocol."""

__version__ = "0.1.0"
