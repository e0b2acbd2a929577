"""Measure inference speed, latency, memory and training throughput of our
pipeline against spaCy's `ner` pipeline, in one run on one machine, and write
the table into BENCHMARKS.md.

    python scripts/benchmark_speed.py --ours training/benchmark/ours-seed_0/model-best \
        --spacy training/benchmark/spacy-spaCy_ner/model-best --data corpus/conll03/test.spacy

Each pipeline is measured in its own subprocess (so that peak memory is its
own), ours and spaCy's alternately. Words per second: raw texts through
`nlp.pipe` at the default batch size, median of --reps runs after a warm-up.
Latency: `nlp(text)` on one 20-word sentence, median and 95th percentile.
Training throughput: words per second of `nlp.update` over batches of 1000
words of the training file, after initialization, with each config.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

SENTENCE = "The European Central Bank said on Tuesday that Angela Moreau will lead its new office in Lyon from March ."


def load_texts(path: Path) -> List[str]:
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    return [doc.text for doc in DocBin().from_disk(path).get_docs(nlp.vocab)]


def measure_inference(model: str, data: Path, reps: int, n_process: int, latency_calls: int) -> Dict:
    """Runs inside a subprocess: all inference figures for one pipeline."""
    import spacy

    texts = load_texts(data)
    nlp = spacy.load(model)
    n_words = sum(len(doc) for doc in nlp.tokenizer.pipe(texts))
    list(nlp.pipe(texts[:50]))  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _doc in nlp.pipe(texts):
            pass
        times.append(time.perf_counter() - start)
    result = {
        "words": n_words,
        "wps": n_words / statistics.median(times),
        "wps_runs": [n_words / t for t in times],
    }
    words = len(nlp.make_doc(SENTENCE))
    for _ in range(20):
        nlp(SENTENCE)
    lat = []
    for _ in range(latency_calls):
        start = time.perf_counter()
        nlp(SENTENCE)
        lat.append(time.perf_counter() - start)
    lat.sort()
    result.update(
        latency_words=words,
        latency_median_ms=1000 * statistics.median(lat),
        latency_p95_ms=1000 * lat[int(0.95 * (len(lat) - 1))],
    )
    result["peak_rss_mib_single"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if n_process > 1:
        mp_times = []
        for _ in range(max(1, reps // 2)):
            start = time.perf_counter()
            for _doc in nlp.pipe(texts, n_process=n_process):
                pass
            mp_times.append(time.perf_counter() - start)
        result["wps_multiprocess"] = n_words / statistics.median(mp_times)
    return result


def measure_training(config: str, train: Path, seconds: float) -> Dict:
    """Runs inside a subprocess: words per second of nlp.update with a config."""
    from spacy.training import Example
    from spacy.tokens import DocBin
    from spacy.util import load_model_from_config, minibatch
    from thinc.api import Config

    cfg = Config().from_disk(config, overrides={"paths.train": str(train), "paths.dev": str(train)})
    nlp = load_model_from_config(cfg, auto_fill=True, validate=True)
    docs = list(DocBin().from_disk(train).get_docs(nlp.vocab))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    optimizer = nlp.initialize(lambda: examples[:200])
    dropout = cfg["training"]["dropout"]
    words, start = 0, time.perf_counter()
    batches = minibatch(examples, size=8)
    for batch in batches:
        nlp.update(batch, sgd=optimizer, drop=dropout)
        words += sum(len(eg.predicted) for eg in batch)
        if time.perf_counter() - start > seconds:
            break
    return {"train_wps": words / (time.perf_counter() - start), "train_words": words}


def child(args: argparse.Namespace) -> None:
    if args.mode == "inference":
        out = measure_inference(args.model, args.data, args.reps, args.n_process, args.latency_calls)
    else:
        out = measure_training(args.model, args.data, args.seconds)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out), flush=True)


def run_child(*extra: str) -> Dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *extra], capture_output=True, text=True, env=dict(os.environ)
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def render(results: Dict, args: argparse.Namespace) -> str:
    ours, theirs = results["ours"], results["spacy"]

    def ratio(key: str) -> str:
        return f"{ours[key] / theirs[key]:.2f}x"

    rows = [
        ("words/s through `nlp.pipe` (median of runs)", f"{ours['wps']:,.0f}", f"{theirs['wps']:,.0f}", ratio("wps")),
        (f"words/s, `n_process={args.n_process}`", f"{ours.get('wps_multiprocess', 0):,.0f}", f"{theirs.get('wps_multiprocess', 0):,.0f}", ratio("wps_multiprocess") if "wps_multiprocess" in ours else "-"),
        (f"latency `nlp(text)`, {ours['latency_words']} words, median (ms)", f"{ours['latency_median_ms']:.2f}", f"{theirs['latency_median_ms']:.2f}", ratio("latency_median_ms")),
        ("latency, 95th percentile (ms)", f"{ours['latency_p95_ms']:.2f}", f"{theirs['latency_p95_ms']:.2f}", ratio("latency_p95_ms")),
        ("peak memory of the inference process (MiB)", f"{ours['peak_rss_mib']:,.0f}", f"{theirs['peak_rss_mib']:,.0f}", ratio("peak_rss_mib")),
    ]
    if "train_wps" in ours and "train_wps" in theirs:
        rows.append(("training words/s (`nlp.update`)", f"{ours['train_wps']:,.0f}", f"{theirs['train_wps']:,.0f}", ratio("train_wps")))
    lines = [
        "## Speed and memory on CPU",
        "",
        f"Written by `python scripts/benchmark_speed.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}.",
        f"Data: `{args.data}` ({ours['words']:,} words, raw text, tokenizer included). Ours: `{args.ours}`; "
        f"spaCy's: `{args.spacy}` (tok2vec + ner, efficiency config). {args.reps} timed runs each after a warm-up, "
        "each pipeline in its own process, ours and spaCy's alternately; ratios are ours / spaCy's "
        "(above 1 is better for words/s, below 1 is better for latency and memory).",
        "",
        "| measure | rnn_tagger | spaCy ner | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", f"Per-run words/s, ours: {', '.join(f'{x:,.0f}' for x in ours['wps_runs'])}; spaCy's: {', '.join(f'{x:,.0f}' for x in theirs['wps_runs'])}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="inference", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60, help="seconds of training to time per config")
    parser.add_argument("--ours", default="training/conll03/model-best")
    parser.add_argument("--spacy", default="training/benchmark/spacy-spaCy_ner/model-best")
    parser.add_argument("--ours-config", default="configs/config.cfg")
    parser.add_argument("--spacy-config", default="training/benchmark/spacy_ner.cfg")
    parser.add_argument("--data", type=Path, default=Path("corpus/conll03/test.spacy"))
    parser.add_argument("--train-data", type=Path, default=Path("corpus/conll03/train.spacy"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--n-process", type=int, default=2)
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument("--no-training", action="store_true", help="skip the training throughput")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    common = ["--data", str(args.data), "--reps", str(args.reps), "--n-process", str(args.n_process), "--latency-calls", str(args.latency_calls)]
    results: Dict = {}
    for name, model in (("ours", args.ours), ("spacy", args.spacy)):
        results[name] = run_child("--model", model, *common)
        print(name, json.dumps(results[name]), flush=True)
    if not args.no_training:
        for name, config in (("ours", args.ours_config), ("spacy", args.spacy_config)):
            train = run_child("--mode", "training", "--model", config, "--data", str(args.train_data), "--seconds", str(args.seconds))
            results[name]["train_wps"] = train["train_wps"]
            print(name, "training", json.dumps(train), flush=True)
    section = render(results, args)
    replace_section(args.output, "speed", section)
    out_json = ROOT / "training" / "benchmark" / "speed.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2))
    print(section)


if __name__ == "__main__":
    main()
