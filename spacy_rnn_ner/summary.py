"""A per-layer summary of an rnn_tagger model, like Keras's `model.summary()`:
each layer's output shape on a sample batch and its parameter count, then the
thinc, torch and total parameter counts and the size on disk.

    python -m spacy_rnn_ner.summary MODEL_OR_CONFIG [--component NAME] [--labels PER,LOC,ORG,MISC]

MODEL_OR_CONFIG is a trained pipeline (a directory or an installed package)
or a training config (.cfg), which is built and initialized with untrained
weights. Rows come from a walk over the model's thinc nodes, so that every
parameter is counted once whatever the embedding is; the layers this package
builds get descriptive names.
"""
import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import numpy
import spacy
import torch
from spacy.attrs import NAMES as ATTR_NAMES
from spacy.language import Language
from spacy.pipeline.tok2vec import Tok2VecListener
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model, PyTorchShim
from thinc.types import Ragged

# Two short docs: enough to see every layer's output width. Entity-like words
# keep the document memory from being all zeros, which changes no shape.
SAMPLE_TEXTS = (
    "Anna Berg flew from Lyon to Oslo on Monday .",
    "Nordwind Energy hired Anna Berg in Oslo .",
)
DEFAULT_LABELS = "PER,LOC,ORG,MISC"
# The token count of the sample batch, as the first dimension of a shape.
N_TOKENS = "n_tokens"
# nn.LSTM names its weights weight_ih_l{layer}[_reverse], bias_hh_l{layer}[_reverse], ...
_LSTM_PARAM = re.compile(r"_l(\d+)(_reverse)?$")


class Row(NamedTuple):
    """One line of the summary: a layer, its output on the sample batch and its weights."""

    name: str
    shape: str  # e.g. "(n_tokens, 128)"; "-" where the layer did not run
    params: int
    kind: str  # "thinc" or "torch" (where the weights live), "" for layers without weights
    detail: str


class DiskSize(NamedTuple):
    """Bytes on disk of the component's folder and of the whole pipeline folder."""

    component: int
    pipeline: int
    measured_on: str  # the folder measured, or "a temporary copy" for a pipeline serialized to measure it


# -- the rows ------------------------------------------------------------------


def model_summary(nlp: Language, component: Optional[str] = None, texts: Sequence[str] = SAMPLE_TEXTS) -> List[Row]:
    """One row per layer of an initialized rnn_tagger's model, with output shapes from a forward pass on `texts`.

    The rows' parameter counts add up to every set thinc parameter of the
    model plus every parameter of its torch modules.
    """
    name = find_component(nlp, component)
    model: Model = nlp.get_pipe(name).model
    if model.has_ref("output") and model.get_ref("output").has_param("W") is not True:
        raise ValueError(
            f"[rnn_tagger] The component '{name}' is not initialized, so its layers have no "
            "weights to count. Summarize a trained pipeline, or a config (which is initialized "
            "with untrained weights)."
        )
    # The components before the tagger set what it reads (sentence starts, a tok2vec's doc.tensor).
    later = nlp.pipe_names[nlp.pipe_names.index(name) :]
    docs = list(nlp.pipe(texts, disable=later))
    seen = record_shapes(model, docs)
    n_tokens = sum(len(doc) for doc in docs)
    walker = _RowWalker(seen, n_tokens, tuple(nlp.vocab.vectors.shape))
    embed = model.get_ref("embed") if model.has_ref("embed") else None
    if embed is not None:
        walker.add_section(embed, "embed")
    if model.has_ref("encoder"):
        encoder = model.get_ref("encoder")
        walker.add_section(encoder, "")
        walker.add_memory(_parent_of(model, encoder))
    if model.has_ref("output"):
        walker.add_section(model.get_ref("output"), "output")
    if model.has_ref("crf"):
        walker.add_section(model.get_ref("crf"), "")
    # Whatever the named parts did not cover, so that the counts always add up.
    walker.add_section(model, "other", placeholder=False)
    return walker.rows


def find_component(nlp: Language, component: Optional[str] = None) -> str:
    """The name of the component to summarize: `component`, or the pipeline's first rnn_tagger."""
    if component is not None:
        if component not in nlp.component_names:
            raise ValueError(f"[rnn_tagger] No component '{component}' in the pipeline {nlp.component_names}.")
        return component
    taggers = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "rnn_tagger"]
    if not taggers:
        raise ValueError(
            f"[rnn_tagger] The pipeline {nlp.pipe_names} has no rnn_tagger component; "
            "name the component to summarize."
        )
    return taggers[0]


def record_shapes(model: Model, docs: List[Doc]) -> Dict[int, Tuple[Any, Any]]:
    """(input shape, output shape) of every node of `model` on its first call in one forward pass over `docs`.

    The pass runs in training mode, which calls every layer (prediction skips
    the embedding tables through the fused fast path, fused_embed.py). No
    gradient is kept, and the random states that dropout draws from (numpy's,
    and torch's on the CPU and on a CUDA device torch has started) are
    restored, so nothing about the model or later results changes. A
    Tok2VecListener reads doc.tensor, as in prediction: in training it would
    wait for its upstream component's batch.
    """
    seen: Dict[int, Tuple[Any, Any]] = {}
    originals = {node.id: node._func for node in model.walk()}

    def recording(func: Callable, train: bool) -> Callable:
        def forward(node: Model, X: Any, is_train: bool):
            Y, backprop = func(node, X, is_train=is_train and train)
            seen.setdefault(node.id, (_shape(X), _shape(Y)))
            return Y, backprop

        return forward

    nodes = list(model.walk())
    numpy_state = numpy.random.get_state()
    try:
        cuda = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            for node in nodes:
                node._func = recording(originals[node.id], not isinstance(node, Tok2VecListener))
            model(docs, is_train=True)
    finally:
        for node in nodes:
            node._func = originals[node.id]
        numpy.random.set_state(numpy_state)
    return seen


def _shape(value: Any) -> Optional[Tuple[int, ...]]:
    """The shape of an array, a Ragged, or a list of per-doc arrays stacked (rows summed)."""
    if isinstance(value, Ragged):
        return tuple(value.dataXd.shape)
    if hasattr(value, "shape"):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)) and value and all(getattr(v, "ndim", 0) >= 1 for v in value):
        tails = {tuple(v.shape[1:]) for v in value}
        if len(tails) == 1:
            return (sum(len(v) for v in value),) + tails.pop()
    return None


def _parent_of(model: Model, child: Model) -> Optional[Model]:
    return next((node for node in model.walk() if any(layer is child for layer in node.layers)), None)


def _set_params(node: Model) -> List[Tuple[str, Any]]:
    return [(name, node.get_param(name)) for name in node.param_names if node.has_param(name) is True]


def _torch_modules(node: Model) -> List[torch.nn.Module]:
    return [shim._model for shim in node.shims if isinstance(shim, PyTorchShim)]


class _RowWalker:
    """Rows for the nodes under each part of the model, each node counted once."""

    def __init__(self, seen: Dict[int, Tuple[Any, Any]], n_tokens: int, vectors_shape: Tuple[int, ...]) -> None:
        self.seen = seen
        self.vectors_shape = vectors_shape
        self.n_tokens = n_tokens
        self.claimed: Set[int] = set()
        self.rows: List[Row] = []

    def shape(self, node: Model, which: int = 1, width: Optional[int] = None) -> str:
        """The node's recorded output (which=1) or input (which=0) shape, the last dimension replaced by `width`."""
        shape = self.seen.get(node.id, (None, None))[which]
        if shape is None:
            return "-"
        dims = list(shape)
        if width is not None:
            dims[-1] = width
        text = [N_TOKENS if i == 0 and d == self.n_tokens else str(d) for i, d in enumerate(dims)]
        return "(" + ", ".join(text) + ")"

    def add_section(self, root: Model, prefix: str, placeholder: bool = True) -> None:
        """Rows for the nodes under `root` that hold weights (or are a known-word list);
        with `placeholder`, one row for `root` itself where none does (e.g. a Tok2VecListener)."""
        n_before = len(self.rows)
        extractor: Optional[Model] = None  # the latest feature extractor: it names the hash tables after it
        for node in root.walk(order="dfs_pre"):
            if node.id in self.claimed:
                continue
            if node.name in ("extract_features", "brown_clusters"):
                extractor = node
            modules = _torch_modules(node)
            if modules:
                self.claimed.add(node.id)
                for module in modules:
                    self.add_torch(node, module, "memory " if prefix == "memory" else "")
            elif _set_params(node) or node.name == "known_words":
                self.claimed.add(node.id)
                self.rows.append(self.thinc_row(node, prefix, extractor))
        if placeholder and len(self.rows) == n_before and root.id not in self.claimed:
            self.claimed.add(root.id)
            upstream = getattr(root, "upstream_name", None)
            detail = f"reads the '{upstream}' component's output (its weights count there)" if upstream else ""
            self.rows.append(Row(f"{prefix} {root.name}".strip(), self.shape(root), 0, "", detail))

    def thinc_row(self, node: Model, prefix: str, extractor: Optional[Model]) -> Row:
        """The row of one thinc node, named and described by what kind of layer it is."""
        params = _set_params(node)
        n_params = sum(int(p.size) for _, p in params)
        kind = "thinc" if params else ""
        shapes = ", ".join(f"{name} {'x'.join(map(str, p.shape))}" for name, p in params)

        def dim(d: str) -> str:
            return f"{node.get_dim(d):,}" if node.has_dim(d) is True else "?"

        name, detail = f"{prefix} {node.name}".strip(), shapes
        if node.name == "hashembed":
            name, detail = f"hash table {_feature_name(node, extractor)}", f"{dim('nV')} rows x {dim('nO')}"
        elif node.name == "known_words":
            known, min_count = len(node.attrs["known_words"]), node.attrs["min_count"]
            on = min_count > 0 and known
            name = "known words"
            detail = f"{known:,} words seen >= {min_count}x; the rest share one vector" if on else "off (no word list)"
        elif node.name == "charembed":
            name, detail = "character embedding", f"{dim('nC')} chars x 256 bytes x {dim('nM')}"
        elif node.name == "char_cnn":
            name = "character CNN"
            detail = f"{dim('nO')} filters, window {dim('nW')} over {dim('nV')} chars x {dim('nM')}"
        elif node.name == "static_vectors":
            table = "x".join(map(str, self.vectors_shape))
            name, detail = "static vectors", f"projection {dim('nM')} -> {dim('nO')} (the vocab's {table} table: not counted)"
        elif node.name == "maxout":
            label = {"embed": "mix", "memory": "window"}.get(prefix, prefix)
            name, detail = f"{label} maxout".strip(), f"{dim('nI')} -> {dim('nO')} x {dim('nP')} pieces"
        elif node.name == "layernorm":
            label = {"embed": "mix", "memory": "window"}.get(prefix, prefix)
            name, detail = f"{label} layer norm".strip(), f"{dim('nI')} wide"
        elif node.name in ("softmax", "linear"):
            name = "output softmax" if node.name == "softmax" else "output linear (CRF emissions)"
            detail = f"{dim('nI')} -> {dim('nO')} tags"
        elif node.name == "crf_transitions":
            name, detail = "CRF transitions", f"{dim('nO')} x {dim('nO')} tags"
        return Row(name, self.shape(node), n_params, kind, detail)

    def add_torch(self, node: Model, module: torch.nn.Module, prefix: str) -> None:
        """One row per LSTM layer and direction of a torch module, and one for any other weights it has.

        Counts the module's registered parameters only (PackedBiLSTM's
        one-directional template LSTMs are not registered and own no weights).
        """
        groups: Dict[Tuple[int, bool], List[Tuple[str, torch.nn.Parameter]]] = {}
        rest = 0
        for pname, param in module.named_parameters():
            match = _LSTM_PARAM.search(pname)
            if match:
                groups.setdefault((int(match.group(1)), bool(match.group(2))), []).append((pname, param))
            else:
                rest += param.numel()
        for (layer, reverse), params in sorted(groups.items()):
            weights = dict((pname.rsplit(".", 1)[-1].split("_l")[0], p) for pname, p in params)
            hidden = weights["weight_hh"].shape[1] if "weight_hh" in weights else None
            n_in = weights["weight_ih"].shape[1] if "weight_ih" in weights else "?"
            direction = "backward" if reverse else "forward"
            self.rows.append(
                Row(
                    f"{prefix}BiLSTM layer {layer + 1} {direction}",
                    self.shape(node, width=hidden),
                    sum(p.numel() for _, p in params),
                    "torch",
                    f"{n_in} -> {hidden} (4 gates)",
                )
            )
        if rest or not groups:
            self.rows.append(Row(f"{prefix}{type(module).__name__}", self.shape(node), rest, "torch", "torch weights"))

    def add_memory(self, encoder: Optional[Model]) -> None:
        """The document memory row (no weights) and the rows of the layer that reads it (window Maxout or BiLSTM)."""
        if encoder is None or not encoder.attrs.get("doc_memory"):
            return
        second = encoder.get_ref("memory_encoder") if encoder.has_ref("memory_encoder") else None
        shape = self.shape(second, which=0) if second is not None else self.shape(encoder)
        self.rows.append(Row("document memory", shape, 0, "", "[state, mean state of the word's other mentions]"))
        if second is not None:
            self.add_section(second, "memory")


def _feature_name(table: Model, extractor: Optional[Model]) -> str:
    """What a hash table embeds: the attribute (or cluster prefix) of the column it reads."""
    column = table.attrs.get("column")
    if extractor is None or column is None:
        return f"column {column}"
    if extractor.name == "brown_clusters":
        return f"cluster {extractor.attrs['prefix_lengths'][column]} bits"
    attr = extractor.attrs["columns"][column]
    return ATTR_NAMES[attr] if isinstance(attr, int) and 0 <= attr < len(ATTR_NAMES) else str(attr)


# -- sizes on disk and the table -----------------------------------------------------


def folder_size(path: Union[str, Path]) -> int:
    """Bytes of all files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def disk_size(nlp: Language, component: Optional[str] = None, path: Optional[Union[str, Path]] = None) -> DiskSize:
    """The size of the component's folder and of the pipeline folder: those under
    `path` (where the pipeline was loaded from), else of a copy saved to a temporary folder."""
    name = find_component(nlp, component)
    if path is not None and (Path(path) / name).is_dir():
        return DiskSize(folder_size(Path(path) / name), folder_size(path), str(path))
    with tempfile.TemporaryDirectory() as tmp:
        nlp.to_disk(tmp)
        return DiskSize(folder_size(Path(tmp) / name), folder_size(tmp), "a temporary copy")


def format_summary(rows: Sequence[Row], disk: Optional[DiskSize] = None, title: str = "") -> str:
    """The rows as a fixed-width table closed by the parameter totals and the sizes on disk."""
    header = ("Layer", "Output shape", "Params", "Weights", "Detail")
    cells = [(r.name, r.shape, f"{r.params:,}", r.kind or "-", r.detail) for r in rows]
    widths = [max(len(line[i]) for line in [header] + cells) for i in range(len(header) - 1)]

    def line(values: Sequence[str]) -> str:
        # Counts align right, text left; the detail column runs on unpadded.
        padded = [v.rjust(w) if i == 2 else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(padded + [values[-1]]).rstrip()

    rule = "-" * max(len(line(c)) for c in [header] + cells)
    thinc = sum(r.params for r in rows if r.kind == "thinc")
    torch_params = sum(r.params for r in rows if r.kind == "torch")
    out = ([title, "=" * len(title)] if title else []) + [line(header), rule] + [line(c) for c in cells] + [rule]
    out += [
        f"thinc parameters: {thinc:,}",
        f"torch parameters: {torch_params:,}",
        f"total parameters: {thinc + torch_params:,}",
    ]
    if disk is not None:
        out.append(
            f"size on disk ({disk.measured_on}): component {_bytes(disk.component)}, pipeline {_bytes(disk.pipeline)}"
        )
    out.append(f"Output shapes are for a sample batch; {N_TOKENS} is its number of tokens.")
    return "\n".join(out)


def _bytes(n: int) -> str:
    return f"{n / 1e6:,.2f} MB ({n:,} bytes)" if n >= 100_000 else f"{n / 1e3:,.1f} kB ({n:,} bytes)"


def summary_title(nlp: Language, component: str) -> str:
    """The component's name, architecture and embedding, from the pipeline's config."""
    model_cfg = nlp.config["components"][component].get("model", {})
    embed = model_cfg.get("embed", {}).get("@architectures", "?")
    return f"Model summary: '{component}' ({model_cfg.get('@architectures', '?')}, embed {embed})"


# -- a pipeline to summarize ----------------------------------------------------


def synthetic_examples(nlp: Language, labels: Sequence[str]) -> List[Example]:
    """One short example per label, with an entity of that label.

    The rnn_tagger's output width comes from its labels, and it refuses to
    initialize from examples without entity annotation; a config has no
    training data at hand, so these stand in for it.
    """
    text = "Anna Berg visited Lyon on Monday ."
    return [Example.from_dict(nlp.make_doc(text), {"entities": [(0, 9, label)]}) for label in labels]


def pipeline_from_config(
    path: Union[str, Path], labels: Sequence[str], overrides: Optional[Dict[str, Any]] = None
) -> Language:
    """The pipeline of a training config, initialized with untrained weights and `labels`."""
    config = spacy.util.load_config(path, overrides=dict(overrides or {}), interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    uses_vectors = any(node.name == "static_vectors" for _, proc in nlp.components for node in _walk(proc))
    if uses_vectors and nlp.config.interpolate()["initialize"].get("vectors") is None:
        raise ValueError(
            f"[rnn_tagger] The config {path} embeds static vectors but names none in "
            "[initialize] vectors: give them as a config override, e.g. --paths.vectors DIR."
        )
    examples = synthetic_examples(nlp, labels)
    nlp.initialize(lambda: examples)
    return nlp


def _walk(component: Any) -> List[Model]:
    model = getattr(component, "model", None)
    return list(model.walk()) if isinstance(model, Model) else []


def is_config_path(model_or_config: str) -> bool:
    """Whether the argument names a config file (a .cfg, or any file) rather than a pipeline."""
    return Path(model_or_config).suffix == ".cfg" or Path(model_or_config).is_file()


def load_for_summary(
    model_or_config: str, labels: Sequence[str], overrides: Optional[Dict[str, Any]] = None
) -> Tuple[Language, Optional[Path]]:
    """The pipeline to summarize and the folder it was loaded from (None for a config or a package)."""
    path = Path(model_or_config)
    if is_config_path(model_or_config):
        if not path.is_file():
            raise ValueError(f"[rnn_tagger] Config file not found: {path}")
        return pipeline_from_config(path, labels, overrides), None
    nlp = spacy.load(model_or_config, config=dict(overrides or {}))
    return nlp, path if path.is_dir() else None


def parse_labels(labels: Union[str, Sequence[str]]) -> List[str]:
    """Labels from "PER,LOC,ORG" or a list; at least one."""
    parts = labels.split(",") if isinstance(labels, str) else list(labels)
    found = [label.strip() for label in parts if label.strip()]
    if not found:
        raise ValueError("[rnn_tagger] Give at least one entity label, e.g. --labels PER,LOC,ORG,MISC.")
    return found


def summary_command(
    model_or_config: str,
    component: Optional[str] = None,
    labels: Union[str, Sequence[str]] = DEFAULT_LABELS,
    overrides: Optional[Dict[str, Any]] = None,
    print_fn: Callable[[str], Any] = print,
) -> str:
    """Print (with `print_fn`) and return the summary of a trained pipeline or of a config's untrained model.

    labels: the entity labels a config's model is initialized with (they set
        the output width); a trained pipeline keeps its own.
    overrides: config overrides, e.g. {"paths.vectors": "vectors/"}.
    """
    label_list = parse_labels(labels)
    nlp, path = load_for_summary(model_or_config, label_list, overrides)
    name = find_component(nlp, component)
    text = format_summary(model_summary(nlp, name), disk_size(nlp, name, path), summary_title(nlp, name))
    if is_config_path(model_or_config):
        text += (
            f"\nUntrained weights, from a config initialized with labels {', '.join(label_list)}; "
            "a known-word list holds only the words of the stand-in examples."
        )
    print_fn(text)
    return text


def config_overrides(args: Sequence[str]) -> Dict[str, Any]:
    """`--section.key value` pairs as a config override dict, read the way the
    `spacy` CLI reads them. spaCy exposes its parser only in the private
    module spacy.cli._util; this is the one place that imports it
    (tests/integration/test_summary_cli.py fails clearly if it moves)."""
    from spacy.cli._util import parse_config_overrides

    return parse_config_overrides(list(args))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m spacy_rnn_ner.summary`; extra --section.key value pairs override the config."""
    parser = argparse.ArgumentParser(prog="python -m spacy_rnn_ner.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_or_config", help="a trained pipeline (directory or package name) or a .cfg file")
    parser.add_argument("--component", "-c", default=None, help="the component (default: the first rnn_tagger)")
    parser.add_argument("--labels", "-l", default=DEFAULT_LABELS, help=f"for a config: labels, comma-separated (default {DEFAULT_LABELS})")
    args, rest = parser.parse_known_args(argv)
    try:
        summary_command(args.model_or_config, args.component, args.labels, config_overrides(rest))
    except (ValueError, OSError) as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
