"""Data handling: CoNLL column files to Docs, and the corpus readers."""
from .corpus import GoldTokenCorpus, create_gold_token_corpus, create_gold_token_corpus_v2

__all__ = ["GoldTokenCorpus", "create_gold_token_corpus", "create_gold_token_corpus_v2"]
