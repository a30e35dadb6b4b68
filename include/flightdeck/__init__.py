"""flightdeck: take a trained model through every deployment pattern and release it safely."""

__version__ = "0.1.0"
