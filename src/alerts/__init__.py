"""alerts: watch public sources and tell chat rooms when something new happens."""

__version__ = "0.1.0"
