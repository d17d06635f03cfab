"""Reproduction of De & Smith (NeurIPS 2020): batch norm biases residual blocks towards the identity."""

__version__ = "0.1.0"
