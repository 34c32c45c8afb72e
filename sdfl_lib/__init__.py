"""sdfl_lib: shallow- and deep-fake image manipulation detection and localization."""

__version__ = "0.1.0"
