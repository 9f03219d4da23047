"""inrlens: which layers of cohort-trained implicit neural representations transfer, and what they encode."""

__version__ = "0.1.0"
