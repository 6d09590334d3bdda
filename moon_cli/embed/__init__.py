"""`moon embed`: products and queries → unit-norm vectors, streamed, resumable, shardable."""
