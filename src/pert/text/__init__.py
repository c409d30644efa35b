"""Text: tokenizer loading, word segmenters and WordPiece vocabulary building."""

from pert.text.segment import Segmenter, get_segmenter
from pert.text.tokenizer import load_tokenizer, word_starts

__all__ = ["Segmenter", "get_segmenter", "load_tokenizer", "word_starts"]
