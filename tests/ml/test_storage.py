"""Compact weight storage (ml/storage.py) and the components' `storage` setting."""
import numpy
import pytest
import spacy
import srsly

from spacy_rnn_ner.ml.features import lookup_clusters
from spacy_rnn_ner.ml.storage import (
    MIN_PACKED,
    _pack_array,
    _pack_clusters,
    _unpack_array,
    _unpack_clusters,
    unpack_model_msg,
)
from tests.helpers import TRAIN_DATA, blank_with_tagger

TEXTS = [text for text, _ in TRAIN_DATA]


def test_int8_rows_are_within_half_a_step_and_float16_is_close():
    rng = numpy.random.default_rng(0)
    table = (rng.normal(size=(300, 64)) * rng.uniform(0.01, 3.0, size=(300, 1))).astype("float32")
    table[7] = 0.0
    back = _unpack_array(_pack_array(table, "int8"))
    assert back.dtype == numpy.float32 and back.shape == table.shape
    step = numpy.abs(table).max(axis=1, keepdims=True) / 127
    assert numpy.all(numpy.abs(back - table) <= step / 2 + 1e-7)
    assert numpy.all(back[7] == 0)
    maxout = rng.normal(size=(8, 3, 40)).astype("float32")  # (nO, nP, nI): rows along the last axis
    assert _unpack_array(_pack_array(maxout, "int8")).shape == (8, 3, 40)
    half = _unpack_array(_pack_array(table, "float16"))
    numpy.testing.assert_allclose(half, table, rtol=1e-3, atol=1e-4)


def test_packed_clusters_find_every_word_of_the_table():
    rng = numpy.random.default_rng(1)
    keys = numpy.unique(rng.integers(1, 2**63, size=5000, dtype=numpy.uint64))
    # A gap wider than 16 bits, and two keys that share their low 32 bits.
    keys = numpy.sort(numpy.concatenate([keys, [numpy.uint64(2**40 + 5), numpy.uint64(2**41 + 5)]])).astype("uint64")
    values = rng.integers(1, 2**18, size=len(keys)).astype("uint32")
    packed = _pack_clusters(keys, values)
    assert packed["gaps"].dtype == numpy.uint16 and len(packed["wide_at"]) >= 1
    short_keys, short_values = _unpack_clusters(srsly.msgpack_loads(srsly.msgpack_dumps(packed)))
    assert short_keys.dtype == numpy.uint32 and len(short_keys) == len(keys) - 1
    assert numpy.all(numpy.diff(short_keys.astype("int64")) > 0)
    unique = numpy.flatnonzero((keys & 0xFFFFFFFF) != 5)
    numpy.testing.assert_array_equal(
        lookup_clusters(short_keys, short_values, keys[unique]), lookup_clusters(keys, values, keys[unique])
    )
    shared = values[(keys & 0xFFFFFFFF) == 5]
    assert len(shared) == 2
    assert lookup_clusters(short_keys, short_values, numpy.array([2**40 + 5], dtype="uint64"))[0] in shared


def test_int8_pipeline_is_smaller_and_predicts_the_same(trained_nlp, tmp_path):
    tagger = trained_nlp.get_pipe("rnn_tagger")
    exact = tagger.to_bytes()
    trained_nlp.to_disk(tmp_path / "exact")
    small = spacy.load(tmp_path / "exact", config={"components": {"rnn_tagger": {"storage": "int8"}}})
    assert small.get_pipe("rnn_tagger").cfg["storage"] == "int8"
    small.to_disk(tmp_path / "small")
    # The test model's tables are small, so a smaller share of it is packed than of the default model's.
    assert (tmp_path / "small" / "rnn_tagger" / "model").stat().st_size < 0.75 * (tmp_path / "exact" / "rnn_tagger" / "model").stat().st_size
    assert len(small.get_pipe("rnn_tagger").to_bytes()) < 0.75 * len(exact)
    loaded = spacy.load(tmp_path / "small")
    assert loaded.config["components"]["rnn_tagger"]["storage"] == "int8"
    for text in TEXTS:
        assert [(e.start, e.end, e.label_) for e in loaded(text).ents] == [(e.start, e.end, e.label_) for e in trained_nlp(text).ents]
    docs = [trained_nlp.make_doc(t) for t in TEXTS]
    for a, b in zip(tagger.model.predict(docs), loaded.get_pipe("rnn_tagger").model.predict(docs)):
        assert numpy.abs(a - b).max() < 0.05 * numpy.abs(a).max()
    # Saving the loaded pipeline again stores the same bytes (rounding is idempotent).
    loaded.to_disk(tmp_path / "again")
    again = (tmp_path / "again" / "rnn_tagger" / "model").read_bytes()
    assert again == (tmp_path / "small" / "rnn_tagger" / "model").read_bytes()


def test_int8_bytes_round_trip_and_the_float32_format_is_thincs(trained_nlp):
    tagger = trained_nlp.get_pipe("rnn_tagger")
    nlp = blank_with_tagger(storage="int8")
    nlp.get_pipe("rnn_tagger").from_bytes(tagger.to_bytes())
    data = nlp.get_pipe("rnn_tagger").to_bytes()
    model_bytes = srsly.msgpack_loads(data)["model"]
    packed = srsly.msgpack_loads(model_bytes)
    kinds = [v[PACKED] for p in packed["params"] for v in p.values() if isinstance(v, dict) and PACKED in v]
    assert kinds and set(kinds) == {"int8"}
    assert all(
        v is None or v.size < MIN_PACKED or v.ndim < 2 for p in packed["params"] for v in p.values() if not isinstance(v, dict)
    )
    other = blank_with_tagger()
    other.get_pipe("rnn_tagger").from_bytes(data)
    for text in TEXTS:
        assert [e.label_ for e in other(text).ents] == [e.label_ for e in trained_nlp(text).ents]
    exact_model = srsly.msgpack_loads(tagger.to_bytes())["model"]
    assert srsly.msgpack_dumps(unpack_model_msg(exact_model)) == exact_model


def test_corrupted_int8_weights_are_refused(trained_nlp, tmp_path):
    nlp = blank_with_tagger(storage="int8")
    nlp.get_pipe("rnn_tagger").from_bytes(trained_nlp.get_pipe("rnn_tagger").to_bytes())
    nlp.to_disk(tmp_path / "p")
    model_file = tmp_path / "p" / "rnn_tagger" / "model"
    data = model_file.read_bytes()
    middle = len(data) // 2
    model_file.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])
    with pytest.raises(ValueError, match=r"\[rnn_tagger\] Could not load.*checksum"):
        spacy.load(tmp_path / "p")


def test_unknown_storage_names_the_choices():
    with pytest.raises(ValueError, match=r"\[rnn_tagger\] storage must be one of float32, float16, int8"):
        blank_with_tagger(storage="int4")


PACKED = "__packed_array__"


@pytest.mark.slow  # loads the one-million-word cluster table
def test_int8_storage_packs_the_cluster_table_and_keeps_its_lookups():
    from tests.ml.test_features import FEATURE_EMBED
    from tests.helpers import SMALL_MODEL, make_examples, train_tagger

    nlp = spacy.blank("en")
    model = dict(SMALL_MODEL, embed=dict(FEATURE_EMBED, **{"@architectures": "spacy_rnn_ner.FeatureEmbed.v2"}))
    nlp.add_pipe("rnn_tagger", config={"model": model, "storage": "int8"})
    train_tagger(nlp, make_examples(nlp), n_iter=2)
    clusters = next(n for n in nlp.get_pipe("rnn_tagger").model.walk() if n.name == "brown_clusters")
    assert clusters.attrs["keys"].dtype == numpy.uint64 and len(clusters.attrs["keys"]) > 100_000
    other = spacy.blank("en")
    other.add_pipe("rnn_tagger", config={"model": model})
    other.get_pipe("rnn_tagger").from_bytes(nlp.get_pipe("rnn_tagger").to_bytes())
    loaded = next(n for n in other.get_pipe("rnn_tagger").model.walk() if n.name == "brown_clusters")
    assert loaded.attrs["keys"].dtype == numpy.uint32
    assert len(loaded.attrs["keys"]) > 0.999 * len(clusters.attrs["keys"])
    doc = nlp.make_doc("Angela Merkel visited Lyon and the Reuters office in JAPAN yesterday")
    orths = doc.to_array("ORTH").astype("uint64")
    numpy.testing.assert_array_equal(
        lookup_clusters(loaded.attrs["keys"], loaded.attrs["values"], orths),
        lookup_clusters(clusters.attrs["keys"], clusters.attrs["values"], orths),
    )
    assert len(nlp.get_pipe("rnn_tagger").to_bytes()) < len(nlp.get_pipe("rnn_tagger").model.to_bytes()) / 2
