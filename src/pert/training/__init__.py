"""Pre-training: config, data stream, checkpoints and the loop."""
