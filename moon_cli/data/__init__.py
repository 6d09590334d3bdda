"""Data stages as library functions: mining positive pairs and sampling negatives."""
