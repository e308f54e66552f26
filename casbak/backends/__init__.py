"""Storage backends: flat string keys to byte values, and nothing more."""
