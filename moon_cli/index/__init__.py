"""`moon index` / `moon search`: a LanceDB table of embeddings with cosine search."""
