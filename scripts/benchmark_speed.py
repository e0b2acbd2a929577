"""Measure inference speed, latency, memory and training throughput of our
pipeline against spaCy's `ner` pipeline, in one run on one machine, and write
the table into BENCHMARKS.md.

    python scripts/benchmark_speed.py --ours training/benchmark/ours-seed_0/model-best \
        --spacy training/benchmark/spacy-spaCy_ner/model-best --data corpus/conll03/test.spacy

Each pipeline is loaded in its own subprocess (so that peak memory is its
own), both at once, and the two are timed in turn: each timed run of ours
is next to one of spaCy's, so that a change in the machine's speed during
the benchmark moves both. Words per second: raw texts through `nlp.pipe` at
the default batch size, median of --reps runs after a warm-up. Latency:
`nlp(text)` on one 20-word sentence, median and 95th percentile of
--latency-calls calls, taken in six alternating blocks. Training throughput:
words per second of `nlp.update` over batches of 8 documents of the training
file (with the config's annotating components, as `spacy train` runs them),
after initialization, with each config, in four alternating blocks of
--seconds / 4.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

SENTENCE = "The European Central Bank said on Tuesday that Angela Moreau will lead its new office in Lyon from March ."


def load_texts(path: Path) -> List[str]:
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    return [doc.text for doc in DocBin().from_disk(path).get_docs(nlp.vocab)]


class InferenceWorker:
    """Runs inside a subprocess: one pipeline, timed on command."""

    def __init__(self, model: str, data: Path) -> None:
        import spacy

        self.texts = load_texts(data)
        self.nlp = spacy.load(model)
        self.words = sum(len(doc) for doc in self.nlp.tokenizer.pipe(self.texts))
        list(self.nlp.pipe(self.texts[:50]))  # warm-up
        for _ in range(20):
            self.nlp(SENTENCE)

    def pipe(self, n_process: int = 1) -> float:
        start = time.perf_counter()
        for _doc in self.nlp.pipe(self.texts, n_process=n_process):
            pass
        return time.perf_counter() - start

    def latency(self, calls: int) -> List[float]:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            self.nlp(SENTENCE)
            times.append(time.perf_counter() - start)
        return times


class TrainingWorker:
    """Runs inside a subprocess: nlp.update with one config, timed on command."""

    def __init__(self, config: str, train: Path) -> None:
        from spacy.training import Example
        from spacy.tokens import DocBin
        from spacy.util import load_model_from_config
        from thinc.api import Config

        cfg = Config().from_disk(config, overrides={"paths.train": str(train), "paths.dev": str(train)})
        self.nlp = load_model_from_config(cfg, auto_fill=True, validate=True)
        docs = list(DocBin().from_disk(train).get_docs(self.nlp.vocab))
        self.examples = [Example(self.nlp.make_doc(doc.text), doc) for doc in docs]
        with warnings.catch_warnings():
            # initialize() runs the model on docs without sentence starts
            # (updates get them from the annotating components); its warning
            # about that would print once per long doc.
            warnings.filterwarnings("ignore", message=r"\[rnn_tagger\] A doc of \d+ tokens has no sentence")
            self.optimizer = self.nlp.initialize(lambda: self.examples[:200])
        self.dropout = cfg["training"]["dropout"]
        # As `spacy train` does: components listed there (our sentencizer)
        # annotate each batch before the update.
        self.annotates = list(cfg["training"].get("annotating_components", []))
        self.batches = self._batches()

    def _batches(self):
        from spacy.util import minibatch

        while True:
            yield from minibatch(self.examples, size=8)

    def train(self, seconds: float) -> Tuple[int, float]:
        words, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            batch = next(self.batches)
            self.nlp.update(batch, sgd=self.optimizer, drop=self.dropout, annotates=self.annotates)
            words += sum(len(eg.predicted) for eg in batch)
        return words, time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    """Load one pipeline (or training config), then answer commands on stdin
    with one JSON line each, until stdin closes."""
    if args.mode == "inference":
        worker: object = InferenceWorker(args.model, args.data)
        ready = {"words": worker.words}  # type: ignore[attr-defined]
    else:
        worker = TrainingWorker(args.model, args.data)
        ready = {}
    print("RESULT " + json.dumps(ready), flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "pipe":
            out = worker.pipe(int(rest[0]))  # type: ignore[attr-defined]
        elif command == "latency":
            out = worker.latency(int(rest[0]))  # type: ignore[attr-defined]
        elif command == "train":
            out = worker.train(float(rest[0]))  # type: ignore[attr-defined]
        else:
            out = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(out), flush=True)


class Child:
    """A measuring subprocess, kept alive between commands."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ),
        )
        self.ready = self._read()

    def ask(self, command: str):
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise RuntimeError(f"benchmark child {self.proc.args} exited with {self.proc.wait()}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def measure_inference(args: argparse.Namespace) -> Dict[str, Dict]:
    """Both pipelines loaded side by side, each timed in turn: every timed
    run of ours is next to one of spaCy's, so that a change in the machine's
    speed during the benchmark moves both."""
    common = ["--data", str(args.data)]
    children = {"ours": Child("--model", args.ours, *common), "spacy": Child("--model", args.spacy, *common)}
    times: Dict[str, List[float]] = {name: [] for name in children}
    lat: Dict[str, List[float]] = {name: [] for name in children}
    mp: Dict[str, List[float]] = {name: [] for name in children}
    for _ in range(args.reps):
        for name, c in children.items():
            times[name].append(c.ask("pipe 1"))
    blocks = 6
    for _ in range(blocks):
        for name, c in children.items():
            lat[name] += c.ask(f"latency {max(1, args.latency_calls // blocks)}")
    if args.n_process > 1:
        for _ in range(max(1, args.reps // 2)):
            for name, c in children.items():
                mp[name].append(c.ask(f"pipe {args.n_process}"))
    results: Dict[str, Dict] = {}
    for name, c in children.items():
        results[name] = {"peak_rss_mib": c.ask("rss")}  # the main process's peak, n_process runs included
        c.close()
        words = c.ready["words"]
        ordered = sorted(lat[name])
        results[name].update(
            words=words,
            wps=words / statistics.median(times[name]),
            wps_runs=[words / t for t in times[name]],
            latency_words=len(SENTENCE.split()),
            latency_median_ms=1000 * statistics.median(ordered),
            latency_p95_ms=1000 * ordered[int(0.95 * (len(ordered) - 1))],
        )
        if mp[name]:
            results[name]["wps_multiprocess"] = words / statistics.median(mp[name])
    return results


def measure_training(args: argparse.Namespace, results: Dict[str, Dict]) -> None:
    """Training words/s of both configs, in alternating blocks of --seconds / 4."""
    common = ["--mode", "training", "--data", str(args.train_data)]
    children = {"ours": Child("--model", args.ours_config, *common), "spacy": Child("--model", args.spacy_config, *common)}
    done = {name: [0, 0.0] for name in children}
    for _ in range(4):
        for name, c in children.items():
            words, seconds = c.ask(f"train {args.seconds / 4}")
            done[name][0] += words
            done[name][1] += seconds
    for name, c in children.items():
        c.close()
        results[name]["train_wps"] = done[name][0] / done[name][1]


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
    results = measure_inference(args)
    print(json.dumps(results), flush=True)
    if not args.no_training:
        measure_training(args, results)
        print("training", json.dumps({name: r["train_wps"] for name, r in results.items()}), flush=True)
    section = render(results, args)
    replace_section(args.output, "speed", section)
    out_json = ROOT / "training" / "benchmark" / "speed.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2))
    print(section)


if __name__ == "__main__":
    main()
