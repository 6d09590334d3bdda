"""MOON Embedding's application stage: a CTR model that consumes frozen product embeddings."""
