"""peftbench's version: declared here only (pyproject.toml reads it; records and run ids carry it)."""

__version__ = "0.4.0"
