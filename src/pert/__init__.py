"""pert: the open toolkit for PERT, BERT models pre-trained with the Permuted Language Model."""

__version__ = "0.1.0"
