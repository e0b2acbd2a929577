"""Model code: the registered architectures and their layers (features, the
BiLSTM, document memory and window, the CRF transitions). Importing it
registers the architectures."""
from . import legacy
from .features import build_feature_embed_v2
from .models import build_bilstm_crf_tagger_v2, build_bilstm_tagger_v2

__all__ = ["build_bilstm_tagger_v2", "build_bilstm_crf_tagger_v2", "build_feature_embed_v2", "legacy"]
