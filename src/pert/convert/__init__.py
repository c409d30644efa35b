"""Model folders in and out: Hugging Face folders, TF1 checkpoints, model cards."""
