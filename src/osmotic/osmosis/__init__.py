"""Osmotic Learning (OSM-L): agents align embeddings of their own data to a diffused context."""
