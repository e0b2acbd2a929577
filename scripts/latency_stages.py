"""Where one `nlp(text)` of a 20-word sentence spends its time, stage by
stage, timed inside the full call and each stage alone in a loop.

    python scripts/latency_stages.py --model training/benchmark/ours-seed_0/model-best [--calls 2000]

Inside: the model's contextual encoder is timed around each of its stages
while `nlp(text)` runs as usual. Alone: the same stage called again and
again on the same input, which keeps its weights and inputs in the CPU's
caches. Medians over --calls calls, after a warm-up. Run it alone on the
machine.
"""
import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_speed import SENTENCE  # noqa: E402


def median_ms(fn: Callable[[], object], calls: int) -> float:
    for _ in range(min(200, calls)):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    import numpy
    import spacy
    import torch

    from spacy_rnn_ner.ml import models
    from spacy_rnn_ner.ml.memory import with_memory

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    nlp = spacy.load(args.model)
    tagger = nlp.get_pipe("rnn_tagger")
    doc = nlp(SENTENCE)
    encoder = tagger.model.layers[0]  # the contextual encoder: embedding, LSTM, memory, window
    if encoder.name != "contextual_encoder" or not encoder.has_ref("memory_encoder"):
        sys.exit(f"{args.model}: the script times the default architecture (document memory and window).")
    embed, bilstm = encoder.layers[:2]
    window = encoder.get_ref("memory_encoder")
    inside: Dict[str, List[float]] = defaultdict(list)
    plain = encoder._func

    def timed_forward(model, docs, is_train):
        clock = [time.perf_counter()]

        def lap(name: str) -> None:
            clock.append(time.perf_counter())
            inside[name].append(clock[-1] - clock[-2])

        splits = [models._sentence_lengths(d) for d in docs]
        lap("sentence lengths")
        Xs, _ = embed(docs, is_train)
        lap("embedding")
        Ys, _ = models._run_in_context(model, bilstm, Xs, splits, is_train)
        lap("LSTM layer")
        Ms, _ = with_memory(model.ops, Ys, docs)
        lap("document memory")
        Zs, _ = models._run_in_context(model, window, Ms, splits, is_train)
        lap("window")
        out = [numpy.hstack([M, Z]) for M, Z in zip(Ms, Zs)]
        lap("joining rows")
        return out, None

    total = median_ms(lambda: nlp(SENTENCE), args.calls)
    encoder._func = timed_forward
    try:
        inside.clear()
        median_ms(lambda: nlp(SENTENCE), args.calls)
    finally:
        encoder._func = plain
    X = embed.predict([doc])[0]
    module = bilstm.shims[0]._model
    module.eval()
    X_torch = torch.from_numpy(X)[None]
    scores = tagger.model.predict([doc])
    with torch.no_grad():
        alone = {
            "embedding": median_ms(lambda: embed.predict([doc]), args.calls),
            "LSTM layer": median_ms(lambda: bilstm.predict([X]), args.calls),
            "torch's LSTM kernel": median_ms(lambda: module.lstm(X_torch), args.calls),
        }
    model_alone = median_ms(lambda: tagger.model.predict([doc]), args.calls)
    decode_alone = median_ms(lambda: tagger.decode_docs([doc], scores), args.calls)

    runtime = bilstm.shims[0].runtime  # where the LSTM layer runs a single sentence (lstm_runtime)
    print(
        f"`nlp(text)`, {len(doc)} words, torch threads {torch.get_num_threads()}, LSTM layer in {runtime}: "
        f"{total:.3f} ms (median of {args.calls})"
    )
    print()
    print("| stage | inside `nlp(text)` (ms) | alone in a loop (ms) |")
    print("|---|---|---|")
    for name, times in inside.items():
        shown = f"{alone[name]:.3f}" if name in alone else ""
        print(f"| {name} | {statistics.median(times) * 1e3:.3f} | {shown} |")
    kernel = alone["torch's LSTM kernel"]
    print(f"| torch's LSTM kernel |  | {kernel:.3f} |")
    print(f"| the whole model (`model.predict`) |  | {model_alone:.3f} |")
    print(f"| decoding with confidences (`decode_docs`) |  | {decode_alone:.3f} |")


if __name__ == "__main__":
    main()
