"""Corpus preparation: raw files -> memory-mapped token ids with whole-word starts, and reading them back."""
