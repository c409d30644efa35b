"""Word-order restoration (乱序纠错): data generation, decoding to a permutation, and `restore`."""
