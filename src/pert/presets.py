"""Model shapes by name (no torch here: the CLI lists them in its help)."""

# (layers, hidden, heads, intermediate): the feed-forward layer is 4 x hidden as in BERT, except mini's 2 x: the
# demo's shape, 1.5x the tokens per second of 4 x on a CPU at nearly the same PerLM learning per step (docs/perlm.md)
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "micro": (4, 128, 2, 512),
    "mini": (2, 256, 4, 512),
    "tiny": (4, 256, 4, 1024),
    "small": (6, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}
