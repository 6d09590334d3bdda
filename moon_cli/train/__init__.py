"""`moon train`: behaviour-driven contrastive post-training (and catalogue-only pre-training) of MOON."""
