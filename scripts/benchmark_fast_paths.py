"""What each prediction fast path buys: `nlp.pipe` words/s over a corpus and
the median latency of `nlp(text)` on one 20-word sentence, with every fast
path on, then with each one replaced by its reference (plain) path.

    python scripts/benchmark_fast_paths.py --data ../shared/data/conll2003/test.iob \
        --train ../shared/data/conll2003/train.iob --runs 3 --benchmarks BENCHMARKS.md

The pipeline is the default config (configs/config.cfg), initialized on the
first --init-docs documents of --train: the weights are untrained, which
changes nothing in the work each path does. Each variant is measured --runs
times, alternating between variants; the table gives the median and the range.
"""
import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

SENTENCE = "The European Central Bank said on Tuesday that Angela Moreau will lead its new office in Lyon from March ."


def reference_paths(nlp) -> Dict[str, Callable]:
    """Per fast path, a context manager that swaps in its reference path."""
    import numpy

    from spacy_rnn_ner.ml import fused_embed, memory
    from spacy_rnn_ner.ml.bilstm import set_lstm_runtime
    from spacy_rnn_ner.pipeline import lattice

    @contextmanager
    def swap(module, name, value):
        old = getattr(module, name)
        setattr(module, name, value)
        try:
            yield
        finally:
            setattr(module, name, old)

    @contextmanager
    def embed_layer_by_layer():
        # The layer's forward looks these two up at call time.
        with swap(fused_embed, "_current_plan", lambda model, cache: None), swap(
            fused_embed, "fused_predict", lambda model, plan, docs: fused_embed.plain_forward(model, docs, False)[0]
        ):
            yield

    def window_training_layers(model, X, lengths):
        pieces = model.ops.unflatten(X, model.ops.asarray1i(lengths))
        return model.ops.xp.concatenate(model.layers[0].predict(pieces))

    @contextmanager
    def window_columns_only():
        with swap(memory, "WINDOW_COLUMNS_MAX_ROWS", 10**12):
            yield

    def viterbi_batched(scores, trans, start, end):
        return lattice._viterbi_group([scores], trans, start, end)[0]

    def recursions_batched(emit, trans, start, end):
        alpha, beta = lattice._recursions(emit[None], trans, start, end, numpy.array([len(emit) - 1]))
        return alpha[0], beta[0]

    @contextmanager
    def lstm_in_torch():
        model = nlp.get_pipe("rnn_tagger").model
        set_lstm_runtime(model, "torch")
        try:
            yield
        finally:
            set_lstm_runtime(model, "auto")

    return {
        "single-sentence LSTM in ONNX Runtime (lstm_runtime)": lstm_in_torch,
        "feature embedding through pre-mixed tables": embed_layer_by_layer,
        "window Maxout without list/ragged layers": lambda: swap(memory, "window_rows", window_training_layers),
        "window Maxout: shifted products past 256 rows": window_columns_only,
        "single-doc Viterbi on vectors": lambda: swap(lattice, "viterbi_one", viterbi_batched),
        "single-doc forward-backward on vectors": lambda: swap(lattice, "_recursions_one", recursions_batched),
    }


def build_pipeline(train: Path, init_docs: int):
    import spacy
    from thinc.api import Config

    from spacy_rnn_ner.data.conll import read_conll

    config = Config().from_disk(ROOT / "configs" / "config.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    docs, _ = read_conll(train, nlp.vocab)
    from spacy.training import Example

    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs[:init_docs]]
    nlp.initialize(lambda: examples)
    return nlp


def measure(nlp, texts: List[str], n_words: int, latency_calls: int) -> Dict[str, float]:
    start = time.perf_counter()
    for _ in nlp.pipe(texts):
        pass
    wps = n_words / (time.perf_counter() - start)
    times = []
    for _ in range(latency_calls):
        t = time.perf_counter()
        nlp(SENTENCE)
        times.append(time.perf_counter() - t)
    return {"wps": wps, "latency_ms": 1000 * statistics.median(times)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="CoNLL column file whose documents are the raw texts")
    parser.add_argument("--train", type=Path, required=True, help="CoNLL column file to initialize the pipeline from")
    parser.add_argument("--init-docs", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: one core per process)")
    parser.add_argument("--benchmarks", type=Path, default=None, help="write the table into this BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from spacy_rnn_ner.data.conll import read_conll

    nlp = build_pipeline(args.train, args.init_docs)
    docs, _ = read_conll(args.data, nlp.vocab)
    texts = [doc.text for doc in docs]
    n_words = sum(len(doc) for doc in nlp.tokenizer.pipe(texts))
    list(nlp.pipe(texts[:20]))
    nlp(SENTENCE)
    variants = {"all fast paths on": None, **reference_paths(nlp)}
    results: Dict[str, List[Dict[str, float]]] = {name: [] for name in variants}
    for run in range(args.runs):
        for name, off in variants.items():
            if off is None:
                results[name].append(measure(nlp, texts, n_words, args.latency_calls))
            else:
                with off():
                    results[name].append(measure(nlp, texts, n_words, args.latency_calls))
            last = results[name][-1]
            print(f"run {run + 1} {name}: {last['wps']:,.0f} words/s, {last['latency_ms']:.2f} ms", flush=True)

    def summary(name: str, key: str) -> str:
        values = [r[key] for r in results[name]]
        fmt = "{:,.0f}" if key == "wps" else "{:.2f}"
        return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    base = results["all fast paths on"]
    base_wps = statistics.median(r["wps"] for r in base)
    base_ms = statistics.median(r["latency_ms"] for r in base)
    lines = [
        f"Written by `python scripts/benchmark_fast_paths.py --data {args.data} --train {args.train} --runs {args.runs}` "
        f"on {machine_description()}, torch threads {args.threads}: the default config, untrained weights, "
        f"`nlp.pipe` over the {len(texts)} raw documents ({n_words:,} words) and `nlp(text)` on a 20-word sentence "
        f"({args.latency_calls} calls). Each row turns one fast path off (its reference path instead); "
        "median over the runs, range in brackets. \"Fast path buys\" is the row's time over the all-on time.",
        "",
        "| variant | nlp.pipe words/s | fast path buys (pipe) | latency, ms | fast path buys (latency) |",
        "|---|---|---|---|---|",
    ]
    for name in variants:
        wps = statistics.median(r["wps"] for r in results[name])
        ms = statistics.median(r["latency_ms"] for r in results[name])
        buys_pipe = "" if name == "all fast paths on" else f"{base_wps / wps:.2f}x"
        buys_latency = "" if name == "all fast paths on" else f"{ms / base_ms:.2f}x"
        lines.append(f"| {name} | {summary(name, 'wps')} | {buys_pipe} | {summary(name, 'latency_ms')} | {buys_latency} |")
    text = "\n".join(lines)
    print(text)
    if args.benchmarks:
        replace_section(args.benchmarks, "fast-paths", "## Prediction fast paths\n\n" + text)


if __name__ == "__main__":
    main()
