"""`python -m spacy_rnn_ner annotate ...`"""
from .cli import app

app(prog_name="python -m spacy_rnn_ner")
