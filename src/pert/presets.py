"""Model shapes by name (no torch here: the CLI lists them in its help)."""

# (layers, hidden, heads); intermediate is 4 x hidden as in BERT.
PRESETS: dict[str, tuple[int, int, int]] = {
    "micro": (4, 128, 2),
    "mini": (2, 256, 4),
    "tiny": (4, 256, 4),
    "small": (6, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}
