"""osmotic: learning across autonomous agents whose raw data never leaves them."""
__version__ = "0.1.0"
