"""Agents' local time series: the paper's CSV layout (`timeseries`) and generated contexts
with the paper's structure (`synthetic`), so experiments run with or without the paper's files."""
