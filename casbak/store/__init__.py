"""The pack store: documents in packs of zstd frames, found through index files."""
