"""Does int8 dynamic quantization (torch.ao.quantization.quantize_dynamic) of
the LSTM speed up our inference? Times the BiLSTM module of a trained
pipeline on the docs of --data, fp32 against int8, alternating, best of
--reps, and writes the answer into BENCHMARKS.md.

    python scripts/check_quantization.py --model training/conll03/model-best --data corpus/conll03/test.spacy

The output layer is a thinc Linear (numpy), which quantize_dynamic cannot
reach, so the LSTM is the only candidate.
"""
import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy
import spacy
import torch
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    nlp = spacy.load(args.model)
    docs = list(DocBin().from_disk(args.data).get_docs(nlp.vocab))
    module = nlp.get_pipe("rnn_tagger").model.get_ref("encoder").shims[0]._model
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        # On the parent module: quantize_dynamic swaps children, never the module it is given.
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), {torch.nn.LSTM}, dtype=torch.qint8)
    assert type(quantized.lstm) is not torch.nn.LSTM, "quantize_dynamic left the LSTM in fp32"
    embed = nlp.get_pipe("rnn_tagger").model.get_ref("embed")
    X_list = embed.predict(docs)
    lengths = torch.tensor([len(x) for x in X_list])
    X = torch.from_numpy(numpy.concatenate(X_list))  # the module takes the docs' rows, concatenated
    best = {"fp32": float("inf"), "int8": float("inf")}
    with torch.no_grad():
        for _ in range(args.reps):
            for name, m in (("fp32", module), ("int8", quantized)):
                start = time.perf_counter()
                m(X, lengths)
                best[name] = min(best[name], time.perf_counter() - start)
        drift = float((module(X, lengths) - quantized(X, lengths)).abs().max())
    n_words = int(lengths.sum())
    ratio = best["fp32"] / best["int8"]
    # End to end: the same pipeline with the int8 LSTM swapped in, F1 on gold tokens and nlp.pipe words/s.
    from spacy_rnn_ner.scoring import evaluate_gold_tokens

    shim = nlp.get_pipe("rnn_tagger").model.get_ref("encoder").shims[0]
    texts = [doc.text for doc in docs]
    f1, wps = {}, {"fp32": 0.0, "int8": 0.0}
    for _ in range(args.reps):
        for name, m in (("fp32", module), ("int8", quantized)):
            shim._model = m
            start = time.perf_counter()
            n = sum(len(doc) for doc in nlp.pipe(texts))
            wps[name] = max(wps[name], n / (time.perf_counter() - start))
    for name, m in (("fp32", module), ("int8", quantized)):
        shim._model = m
        f1[name] = 100 * evaluate_gold_tokens(nlp, args.data)["ents_f"]
    shim._model = module
    lines = [
        "## Optional int8 inference (dynamic quantization of the LSTM)",
        "",
        f"Written by `python scripts/check_quantization.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}.",
        f"The BiLSTM module of `{args.model}` on the {len(docs)} docs ({n_words:,} tokens) of `{args.data}`, "
        f"{args.threads} torch thread(s), best of {args.reps} alternating runs.",
        "",
        "| LSTM weights | LSTM alone (s) | LSTM words/s | whole pipeline, `nlp.pipe` words/s | F1 on these docs |",
        "|---|---|---|---|---|",
        f"| fp32 | {best['fp32']:.3f} | {n_words / best['fp32']:,.0f} | {wps['fp32']:,.0f} | {f1['fp32']:.2f} |",
        f"| int8 (`quantize_dynamic`) | {best['int8']:.3f} | {n_words / best['int8']:,.0f} | {wps['int8']:,.0f} | {f1['int8']:.2f} |",
        "",
        f"int8 makes the LSTM {ratio:.2f}x as fast and the whole pipeline {wps['int8'] / wps['fp32']:.2f}x; "
        f"F1 changes by {f1['int8'] - f1['fp32']:+.2f}; the largest change in an LSTM output is {drift:.3f}. "
        "Pipeline words/s: best of the alternating runs, raw text, tokenizer included.",
        "",
    ]
    replace_section(args.output, "quantization", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
