"""Where prediction and training spend their time, by stage, from a
pyinstrument profile (`pip install pyinstrument`).

    python scripts/profile_stages.py --model training/benchmark/ours-seed_0/model-best \
        --data corpus/conll03/test.spacy --train corpus/conll03/train.spacy [--output BENCHMARKS.md]

Prediction: `nlp.pipe` over the raw text of the documents in --data.
Training: `nlp.update` on batches of about 1000 words of --train (as the
default config's batcher), from the trained weights.

Each sample's time goes to the innermost frame that belongs to a stage: our
own modules name their stage; thinc's generic layers (linear, softmax) count
as the output layer only outside every other stage; calls into compiled code,
which pyinstrument records without their Python callers, are named by what
they are; the rest is Python glue.
"""
import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

STAGES = [
    "tokenizer",
    "feature extraction and hashed tables (fused embedding)",
    "cluster lookups",
    "known-word lookup",
    "character embedding",
    "LSTM",
    "document memory and window",
    "output layer",
    "CRF forward-backward (confidences, and the loss in training)",
    "Viterbi",
    "set_annotations",
    "gold tags (alignment with the reference)",
    "optimizer",
    "compiled: gather_add (hashed-table rows)",
    "compiled: scatter_add (document memory's sums; in training also table gradients)",
    "compiled: gemm and maxout (feature mixing, window, output layer)",
    "compiled: spaCy tokenizer, Doc.to_array and token access",
    "other (Python glue: thinc layers, spaCy's pipe loop, numpy)",
]
OTHER = STAGES[-1]

# (path suffix, function name or None for any) -> stage; the first match wins.
STRONG: List[Tuple[str, Optional[str], str]] = [
    ("spacy_rnn_ner/ml/features.py", "_cluster_forward", "cluster lookups"),
    ("spacy_rnn_ner/ml/features.py", "lookup_clusters", "cluster lookups"),
    ("spacy_rnn_ner/ml/features.py", "_case_fallback", "cluster lookups"),
    ("spacy_rnn_ner/ml/features.py", "_known_words_forward", "known-word lookup"),
    ("spacy/ml/_character_embed.py", None, "character embedding"),
    ("spacy_rnn_ner/ml/char_cnn.py", None, "character embedding"),
    ("spacy_rnn_ner/ml/fused_embed.py", None, "feature extraction and hashed tables (fused embedding)"),
    ("spacy/ml/featureextractor.py", None, "feature extraction and hashed tables (fused embedding)"),
    ("thinc/layers/hashembed.py", None, "feature extraction and hashed tables (fused embedding)"),
    ("spacy_rnn_ner/ml/layers.py", "_hash_embed_forward", "feature extraction and hashed tables (fused embedding)"),
    ("spacy_rnn_ner/ml/bilstm.py", None, "LSTM"),
    ("spacy_rnn_ner/ml/memory.py", None, "document memory and window"),
    ("spacy_rnn_ner/pipeline/lattice.py", "viterbi", "Viterbi"),
    ("spacy_rnn_ner/pipeline/lattice.py", "viterbi_one", "Viterbi"),
    ("spacy_rnn_ner/pipeline/lattice.py", "_viterbi_group", "Viterbi"),
    ("spacy_rnn_ner/pipeline/lattice.py", None, "CRF forward-backward (confidences, and the loss in training)"),
    ("spacy_rnn_ner/pipeline/rnn_tagger.py", "set_annotations", "set_annotations"),
    ("spacy_rnn_ner/pipeline/rnn_tagger.py", "gold_tags", "gold tags (alignment with the reference)"),
    ("thinc/optimizers.py", None, "optimizer"),
    ("spacy_rnn_ner/ml/optimizer.py", None, "optimizer"),
    # The kernels our models call through TorchCPUOps (torch's, not thinc's).
    ("spacy_rnn_ner/ml/ops.py", "gather_add", "compiled: gather_add (hashed-table rows)"),
    ("spacy_rnn_ner/ml/ops.py", "scatter_add", "compiled: scatter_add (document memory's sums; in training also table gradients)"),
    ("spacy_rnn_ner/ml/ops.py", "gemm", "compiled: gemm and maxout (feature mixing, window, output layer)"),
    ("spacy/language.py", "make_doc", "tokenizer"),
]
WEAK: List[Tuple[str, Optional[str], str]] = [
    ("thinc/layers/linear.py", None, "output layer"),
    ("thinc/layers/softmax.py", None, "output layer"),
]
# pyinstrument records calls into compiled (Cython) code without the Python
# frames that made them, so those leaves are named by what they are.
COMPILED: List[Tuple[str, str, str]] = [  # stage names as in STAGES
    ("numpy_ops.pyx", "gather_add", "compiled: gather_add (hashed-table rows)"),
    ("numpy_ops.pyx", "scatter_add", "compiled: scatter_add (document memory's sums; in training also table gradients)"),
    ("numpy_ops.pyx", "gemm", "compiled: gemm and maxout (feature mixing, window, output layer)"),
    ("numpy_ops.pyx", "maxout", "compiled: gemm and maxout (feature mixing, window, output layer)"),
    ("spacy/", "", "compiled: spaCy tokenizer, Doc.to_array and token access"),
]


def stage_of(frame, rules) -> Optional[str]:
    path = (frame.file_path or "").replace("\\", "/")
    for suffix, function, stage in rules:
        if path.endswith(suffix) and (function is None or frame.function == function):
            return stage
    return None


def compiled_stage(frame) -> Optional[str]:
    if frame is None:
        return None
    path = (frame.file_path or "").replace("\\", "/")
    if not path.endswith((".pyx", ".pxd")):
        return None
    for part, function, stage in COMPILED:
        if part in path and (frame.function or "").startswith(function):
            return stage
    return None


def breakdown(session) -> Dict[str, float]:
    totals: Dict[str, float] = defaultdict(float)

    def walk(frame, stage: str, parent=None) -> None:
        strong = stage_of(frame, STRONG)
        if strong is not None:
            stage = strong
        elif stage == OTHER:
            stage = stage_of(frame, WEAK) or stage
        if not frame.children:  # a leaf (pyinstrument's "[self]" frames included) holds its own time
            if stage == OTHER:
                stage = compiled_stage(frame if frame.file_path else parent) or stage
            totals[stage] += frame.time
        for child in frame.children:
            walk(child, stage, frame)

    walk(session.root_frame(), OTHER)
    return totals


def profile(fn):
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    profiler.stop()
    return breakdown(profiler.last_session), wall


def main() -> None:
    import random

    import spacy
    import torch
    from spacy.tokens import DocBin
    from spacy.training.batchers import minibatch_by_words

    from spacy_rnn_ner.scoring import gold_token_examples

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", type=Path, default=None, help="write the table into this BENCHMARKS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    nlp = spacy.load(args.model)
    texts = [doc.text for doc in DocBin().from_disk(args.data).get_docs(nlp.vocab)]
    n_words = sum(len(nlp.make_doc(t)) for t in texts)
    list(nlp.pipe(texts[:10]))
    predict, predict_wall = profile(lambda: list(nlp.pipe(texts, batch_size=256)))

    examples = gold_token_examples(nlp, args.train)
    random.Random(0).shuffle(examples)
    batches = list(minibatch_by_words(examples, size=1000, tolerance=0.2))[: args.train_steps]
    optimizer = nlp.resume_training()
    train_words = sum(len(eg.predicted) for batch in batches for eg in batch)

    def train() -> None:
        for batch in batches:
            nlp.update(batch, sgd=optimizer, drop=0.1)

    training, train_wall = profile(train)

    def column(totals: Dict[str, float]) -> Dict[str, str]:
        total = sum(totals.values()) or 1.0
        return {stage: f"{100 * totals.get(stage, 0.0) / total:.1f}%" for stage in STAGES}

    p, t = column(predict), column(training)
    lines = [
        "## Where the time goes: a profile by stage",
        "",
        f"Written by `python scripts/profile_stages.py --model {args.model} --data {args.data} --train {args.train}` on "
        f"{time.strftime('%Y-%m-%d')}. Machine: {machine_description()}; torch threads {torch.get_num_threads()}. "
        f"pyinstrument, 1 ms sampling. Prediction: `nlp.pipe` over {len(texts)} raw documents ({n_words:,} words) in "
        f"{predict_wall:.1f} s ({n_words / predict_wall:,.0f} words/s under the profiler). Training: {len(batches)} "
        f"`nlp.update` steps of about 1000 words ({train_words:,} words) in {train_wall:.1f} s "
        f"({train_words / train_wall:,.0f} words/s under the profiler). Each sample goes to the innermost stage on its stack.",
        "",
        "| stage | share of prediction | share of training |",
        "|---|---|---|",
    ]
    lines += [f"| {stage} | {p[stage]} | {t[stage]} |" for stage in STAGES]
    lines.append("")
    section = "\n".join(lines)
    if args.output:
        replace_section(args.output, "profile", section)
    print(section)


if __name__ == "__main__":
    main()
