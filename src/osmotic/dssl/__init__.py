"""Distributed self-supervised pre-training (D-SSL): SimSiam, MAE and MAR under FL and DecL."""
