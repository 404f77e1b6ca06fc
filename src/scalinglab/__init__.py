"""scalinglab: train small GPTs and measure how their loss scales."""
__version__ = "0.1.0"
