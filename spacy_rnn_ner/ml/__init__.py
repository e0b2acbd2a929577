"""Model code: the registered architectures and their layers (features, the
BiLSTM, document memory and window, the CRF transitions), the CPU ops and
optimizer they train with. Importing it registers the architectures and
the optimizer."""
from . import legacy
from .features import build_feature_embed_v2
from .models import build_bilstm_crf_tagger_v2, build_bilstm_tagger_v2
from .optimizer import make_torch_adam

__all__ = ["build_bilstm_tagger_v2", "build_bilstm_crf_tagger_v2", "build_feature_embed_v2", "make_torch_adam", "legacy"]
