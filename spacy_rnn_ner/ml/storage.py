"""How a model's weights are stored on disk: exactly ("float32"), or compact
("float16", "int8") to make the saved pipeline small.

The model always computes in float32: compact storage is decoded back to
float32 when the weights are loaded, so it changes the saved weights (by
rounding) and not the speed. What it packs:

- every float array with two or more dimensions and at least MIN_PACKED
  values (the hash-embedding tables, the character table, the maxout
  weights): to float16, or to int8 with one float32 scale per row;
- the Brown-cluster table (a sorted array of one million 64-bit word hashes
  and their cluster paths): the hashes are cut to their low 32 bits and
  stored as 16-bit gaps, the paths as 16-bit indices into the distinct
  paths. Cutting the hashes can give a word that is not in the table the
  cluster of one that is, about once in 4,000 out-of-table words (the table
  fills one 4,300th of the 32-bit space); BrownClusterFeatures looks up
  32-bit keys by the low 32 bits of the word's hash.

Smaller arrays (layer norms, biases, the output layer, the CRF transitions)
and the LSTM's torch weights stay float32. The format is msgpack like
thinc's own `Model.to_bytes`, with the packed entries marked:
`unpack_model_msg` gives the message `Model.from_dict` reads.
"""
import hashlib
from typing import Dict, Tuple

import numpy
import srsly
from thinc.api import Model

STORAGES = ("float32", "float16", "int8")
# Arrays smaller than this stay float32: they are a small share of the size
# and the ones most sensitive to rounding (biases, output layer, transitions).
MIN_PACKED = 16384
# A key in the packed message that thinc's own format does not have.
FORMAT_KEY = "spacy_rnn_ner_storage"
PACKED_ARRAY = "__packed_array__"
PACKED_CLUSTERS = "__packed_clusters__"
CLUSTER_NODE = "brown_clusters"


def check_storage(storage: str, name: str) -> str:
    """The storage name, or a clear error naming the component and the choices."""
    if storage not in STORAGES:
        raise ValueError(f"[{name}] storage must be one of {', '.join(STORAGES)}; got {storage!r}.")
    return storage


def pack_model_bytes(model: Model, storage: str) -> bytes:
    """The model's weights as bytes, packed as `storage` says."""
    if storage == "float32":
        return model.to_bytes()
    msg = model.to_dict()
    for params in msg["params"]:
        for key, value in params.items():
            if _packable(value):
                params[key] = _pack_array(value, storage)
    for node, attrs in zip(msg["nodes"], msg["attrs"]):
        if node["name"] == CLUSTER_NODE and "keys" in attrs and "values" in attrs:
            attrs["keys"] = _packed_cluster_attr(attrs["keys"], attrs["values"])
            attrs["values"] = srsly.msgpack_dumps(None)
    msg[FORMAT_KEY] = storage
    return srsly.msgpack_dumps(msg)


def unpack_model_msg(data: bytes) -> Dict:
    """The message thinc's `Model.from_dict` reads, packed weights decoded to
    float32, from the stored bytes, parsed once. Bytes stored exactly
    (`storage = "float32"`) are thinc's own `Model.to_bytes` format."""
    msg = srsly.msgpack_loads(data)
    if isinstance(msg, dict) and FORMAT_KEY in msg:
        _decode(msg)
    return msg


def _decode(msg: Dict) -> None:
    """Decode a packed message in place."""
    del msg[FORMAT_KEY]
    for params in msg["params"]:
        for key, value in params.items():
            if isinstance(value, dict) and PACKED_ARRAY in value:
                params[key] = _unpack_array(value)
    for node, attrs in zip(msg["nodes"], msg["attrs"]):
        if node["name"] == CLUSTER_NODE and "keys" in attrs:
            packed = srsly.msgpack_loads(attrs["keys"])
            if isinstance(packed, dict) and PACKED_CLUSTERS in packed:
                keys, values = _unpack_clusters(packed)
                attrs["keys"], attrs["values"] = srsly.msgpack_dumps(keys), srsly.msgpack_dumps(values)


def _packable(value) -> bool:
    return (
        isinstance(value, numpy.ndarray) and value.dtype == numpy.float32
        and value.ndim >= 2 and value.size >= MIN_PACKED
    )


def _pack_array(value: numpy.ndarray, storage: str) -> Dict:
    if storage == "float16":
        return {PACKED_ARRAY: "float16", "data": value.astype(numpy.float16)}
    rows = value.reshape(-1, value.shape[-1])
    scale = numpy.abs(rows).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    quantized = numpy.rint(rows / scale[:, None]).clip(-127, 127).astype(numpy.int8)
    return {PACKED_ARRAY: "int8", "data": quantized, "scale": scale.astype(numpy.float32), "shape": list(value.shape)}


def _unpack_array(packed: Dict) -> numpy.ndarray:
    if packed[PACKED_ARRAY] == "float16":
        return packed["data"].astype(numpy.float32)
    rows = packed["data"].astype(numpy.float32) * packed["scale"][:, None]
    return rows.reshape(packed["shape"])


# The last cluster table packed, by a digest of its serialized bytes: the
# table never changes in training, and packing it (a sort of a million keys)
# took about half of each model-best save of a small training run.
_last_packed: Dict[str, bytes] = {}


def _packed_cluster_attr(keys_bytes: bytes, values_bytes: bytes) -> bytes:
    digest = hashlib.sha1(keys_bytes)
    digest.update(values_bytes)
    key = digest.hexdigest()
    if key not in _last_packed:
        keys, values = srsly.msgpack_loads(keys_bytes), srsly.msgpack_loads(values_bytes)
        _last_packed.clear()
        _last_packed[key] = srsly.msgpack_dumps(_pack_clusters(keys, values))
    return _last_packed[key]


def _pack_clusters(keys: numpy.ndarray, values: numpy.ndarray) -> Dict:
    """Sorted 32-bit keys as 16-bit gaps (larger gaps listed apart), paths as indices."""
    short = (keys & 0xFFFFFFFF).astype(numpy.uint32)
    short, first = numpy.unique(short, return_index=True)  # sorted; where two keys share 32 bits, one stays
    paths, codes = numpy.unique(values[first], return_inverse=True)
    gaps = numpy.diff(short, prepend=numpy.uint32(0)).astype(numpy.uint64)
    wide = numpy.flatnonzero(gaps > 0xFFFF)
    return {
        PACKED_CLUSTERS: 1,
        "gaps": (gaps & 0xFFFF).astype(numpy.uint16),
        "wide_at": wide.astype(numpy.uint32),
        "wide_high": (gaps[wide] >> 16).astype(numpy.uint32),
        "paths": paths.astype(numpy.uint32),
        "codes": codes.astype(numpy.uint16 if len(paths) <= 0xFFFF else numpy.uint32),
    }


def _unpack_clusters(packed: Dict) -> Tuple[numpy.ndarray, numpy.ndarray]:
    gaps = packed["gaps"].astype(numpy.uint64)
    gaps[packed["wide_at"].astype(numpy.int64)] += packed["wide_high"].astype(numpy.uint64) << 16
    keys = numpy.cumsum(gaps).astype(numpy.uint32)
    return keys, packed["paths"][packed["codes"].astype(numpy.int64)].astype(numpy.uint32)
