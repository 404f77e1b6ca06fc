"""scalinglaws: fit, backtest and plot neural scaling laws (no torch)."""
__version__ = "0.1.0"
