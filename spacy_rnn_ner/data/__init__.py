"""Data handling: CoNLL column files to Docs, and the gold-token corpus reader."""
from .corpus import GoldTokenCorpus, create_gold_token_corpus

__all__ = ["GoldTokenCorpus", "create_gold_token_corpus"]
