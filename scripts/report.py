"""Write a self-contained HTML evaluation report for a trained rnn_tagger pipeline.

    python scripts/report.py MODEL DATA.spacy --output-dir metrics/report [--n-error-docs 10]

The page holds: the per-type P/R/F table, a confusion table between entity
types (with missed and spurious entities), the reliability diagram and the
expected calibration error of the entity confidences, precision/recall as the
threshold moves from 0 to 0.9, and a displaCy rendering of the documents with
the most errors (correct entities, wrong predictions and missed gold marked),
and the model summary (each layer's output shape and parameters, the size on disk).
Scoring uses the gold tokens and whole documents. Also writes report.json.
"""
import argparse
import base64
import html
import io
import json
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import spacy  # noqa: E402
from spacy import displacy  # noqa: E402

from spacy_rnn_ner.calibration import fit_temperature  # noqa: E402
from spacy_rnn_ner.pipeline.rnn_tagger import save_with_settings  # noqa: E402
from spacy_rnn_ner.scoring import gold_token_examples  # noqa: E402
from spacy_rnn_ner.scoring import (  # noqa: E402
    MISSED,
    SPURIOUS,
    calibration,
    confusion,
    errors_per_doc,
    scored_predictions,
    threshold_curve,
)
from spacy_rnn_ner.summary import disk_size, format_summary, model_summary, summary_title  # noqa: E402

COLORS = {"OK": "#b5e7a0", "WRONG": "#f4a6a6", "MISSED": "#d3d3d3"}


def figure_png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def reliability_plot(cal: Dict) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    bins = [b for b in cal["bins"] if b["count"]]
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=0.09, alpha=0.7, label="fraction correct")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="black", label="bin mean score")
    ax.set_xlabel("entity confidence")
    ax.set_ylabel("fraction of entities correct")
    ax.set_title(f"Reliability (ECE {cal['ece']:.3f}, {cal['n']} entities)")
    ax.legend(loc="upper left", fontsize=8)
    return figure_png(fig)


def threshold_plot(rows: List[Dict]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = [r["threshold"] for r in rows]
    for key in ("precision", "recall", "f"):
        ax.plot(xs, [r[key] for r in rows], marker="o", label=key)
    ax.set_xlabel("threshold")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.set_title("Entity precision and recall by threshold")
    return figure_png(fig)


def table(header: List[str], rows: List[List[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def model_summary_section(nlp, name: str, model_path: Path) -> str:
    """The "Model summary" section: the summary table of component `name`, with the sizes of its saved folders."""
    folder = model_path if model_path.is_dir() else None  # a package name: measured on a saved copy
    text = format_summary(model_summary(nlp, name), disk_size(nlp, name, folder), summary_title(nlp, name))
    return f"<h2>Model summary</h2><pre>{html.escape(text)}</pre>"


def error_markup(predicted, gold) -> Dict:
    """displaCy manual data: predicted entities marked right/wrong, missed gold entities added."""
    ref = {(e.start_char, e.end_char, e.label_) for e in gold.ents}
    pred = {(e.start_char, e.end_char, e.label_) for e in predicted.ents}
    ents = [{"start": s, "end": e, "label": f"{label} OK" if (s, e, label) in ref else f"{label} WRONG"} for s, e, label in pred]
    taken = [(s, e) for s, e, _ in pred]
    for s, e, label in ref - pred:
        if not any(s < te and ts < e for ts, te in taken):
            ents.append({"start": s, "end": e, "label": f"{label} MISSED"})
    return {"text": predicted.text, "ents": sorted(ents, key=lambda x: x["start"]), "title": None}


def write_benchmarks(args, cal: Dict, curve: List[Dict], temperature: float, fitted: List[Dict]) -> None:
    """Put the calibration and threshold tables into BENCHMARKS.md (section per data file)."""
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark_report import replace_section

    lines = [
        f"## Entity confidence on `{args.data}`",
        "",
        f"Written by `python scripts/report.py {args.model} {args.data}{' --fit-temperature' if fitted else ''}` on "
        f"{time.strftime('%Y-%m-%d')}. Confidence = marginal probability of the exact span and label under the "
        "constrained tag lattice. ECE over 10 equal-width bins of the predicted entities' confidences.",
        "",
    ]
    if fitted:
        lines += ["| temperature | log loss | ECE |", "|---|---|---|"]
        lines += [f"| {f['temperature']:g} | {f['log_loss']:.4f} | {f['ece']:.4f} |" for f in fitted]
        lines += ["", f"Chosen temperature (lowest log loss on this data): {temperature:g}.", ""]
    lines += [
        f"ECE at temperature {temperature:g}: **{cal['ece']:.4f}** over {cal['n']:,} predicted entities.",
        "",
        "| threshold | precision | recall | F1 | entities kept |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['threshold']:.1f} | {100 * r['precision']:.2f} | {100 * r['recall']:.2f} | {100 * r['f']:.2f} | {r['kept']:,} |" for r in curve]
    name = "confidence-" + "".join(c if c.isalnum() else "-" for c in str(args.data))
    replace_section(args.benchmarks, name, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--output-dir", type=Path, default=Path("metrics/report"))
    parser.add_argument("--n-error-docs", type=int, default=10)
    parser.add_argument("--spans-key", default=None, help="default: the rnn_tagger's spans_key")
    parser.add_argument("--temperature", type=float, default=None, help="override the component's temperature")
    parser.add_argument(
        "--fit-temperature", action="store_true",
        help="choose the temperature that minimises the log loss of the confidences on DATA",
    )
    parser.add_argument("--save-calibrated", type=Path, default=None, help="save the pipeline with the fitted temperature here")
    parser.add_argument("--benchmarks", type=Path, default=None, help="also write the calibration and threshold tables into this BENCHMARKS.md")
    args = parser.parse_args()

    nlp = spacy.load(args.model)
    tagger_names = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "rnn_tagger"]
    spans_key = args.spans_key or (nlp.get_pipe(tagger_names[0]).cfg["spans_key"] if tagger_names else "rnn_tagger")
    examples = gold_token_examples(nlp, args.data)
    tagger = nlp.get_pipe(tagger_names[0]) if tagger_names else None
    if tagger is not None and args.temperature is not None:
        tagger.cfg["temperature"] = args.temperature
    fitted: List[Dict] = []
    if tagger is not None and args.fit_temperature:
        best, fitted = fit_temperature(nlp, tagger_names[0], examples)
        for row in fitted:
            print(f"temperature {row['temperature']:g}: log loss {row['log_loss']:.4f}, ECE {row['ece']:.4f}")
        tagger.cfg["temperature"] = best
        if args.save_calibrated:
            # Through the config, so that the saved config.cfg holds the fitted value.
            save_with_settings(args.model, args.save_calibrated, tagger_names[0], {"temperature": tagger.cfg["temperature"]})
    temperature = tagger.cfg.get("temperature", 1.0) if tagger is not None else 1.0
    predicted = list(nlp.pipe(eg.predicted for eg in examples))
    pairs = [(p, eg.reference) for p, eg in zip(predicted, examples)]
    for p, eg in zip(predicted, examples):
        eg.predicted = p
    scores = nlp.get_pipe(tagger_names[0]).score(examples) if tagger_names else {}

    conf_scores, correct, n_gold = scored_predictions(pairs, spans_key)
    cal = calibration(conf_scores, correct)
    curve = threshold_curve(conf_scores, correct, n_gold)
    counts = confusion(pairs)
    labels = sorted({g for g, _ in counts if g != SPURIOUS} | {p for _, p in counts if p != MISSED})
    worst = sorted(range(len(pairs)), key=lambda i: -errors_per_doc(*pairs[i]))[: args.n_error_docs]

    args.output_dir.mkdir(parents=True, exist_ok=True)
    per_type = [
        [label, f"{100 * prf['p']:.2f}", f"{100 * prf['r']:.2f}", f"{100 * prf['f']:.2f}"]
        for label, prf in sorted(scores.get("ents_per_type", {}).items())
    ]
    per_type.append(["ALL", f"{100 * scores.get('ents_p', 0):.2f}", f"{100 * scores.get('ents_r', 0):.2f}", f"{100 * scores.get('ents_f', 0):.2f}"])
    conf_rows = [[g] + [counts.get((g, p), 0) for p in labels + [MISSED]] for g in labels + [SPURIOUS]]
    curve_rows = [[f"{r['threshold']:.1f}", f"{100 * r['precision']:.2f}", f"{100 * r['recall']:.2f}", f"{100 * r['f']:.2f}", r["kept"]] for r in curve]
    colors = {f"{label} {kind}": color for label in labels for kind, color in COLORS.items()}
    error_html = displacy.render(
        [error_markup(*pairs[i]) for i in worst], style="ent", manual=True, page=False, options={"colors": colors}
    )
    conf_table = table(["gold / predicted"] + labels + [MISSED], conf_rows)
    summary_html = model_summary_section(nlp, tagger_names[0], args.model) if tagger_names else ""
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>rnn_tagger evaluation report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>Evaluation report</h1>
<p>Model: <code>{html.escape(str(args.model))}</code>. Data: <code>{html.escape(str(args.data))}</code>, {len(examples)} documents,
{sum(len(eg.reference) for eg in examples):,} tokens, {n_gold:,} gold entities (gold tokens, whole documents).</p>
<h2>Precision, recall and F1 per type</h2>{table(["type", "P", "R", "F"], per_type)}
<h2>Confusion between entity types</h2><p>Rows: gold type (or spurious prediction); columns: predicted type for the
same span (or missed). Spans match by exact boundaries.</p>{conf_table}
<h2>Calibration of the entity confidences</h2><p>Expected calibration error (10 equal-width bins): <b>{cal['ece']:.4f}</b>
over {cal['n']:,} predicted entities, temperature {temperature:g}.</p><img alt="reliability diagram" src="data:image/png;base64,{reliability_plot(cal)}">
<h2>Precision and recall by threshold</h2>{table(["threshold", "P", "R", "F", "entities kept"], curve_rows)}
<img alt="threshold curve" src="data:image/png;base64,{threshold_plot(curve)}">
<h2>The {len(worst)} documents with the most errors</h2><p>OK: correct; WRONG: predicted but not a gold entity;
MISSED: a gold entity that no prediction overlaps.</p>{error_html}
{summary_html}
</body></html>"""
    (args.output_dir / "report.html").write_text(page, encoding="utf8")
    summary = {"temperature": temperature, "scores": {k: v for k, v in scores.items() if k.startswith("ents")}, "calibration": cal, "threshold_curve": curve,
               "confusion": [[g, p, n] for (g, p), n in sorted(counts.items())]}
    (args.output_dir / "report.json").write_text(json.dumps(summary, indent=2))
    print(f"ECE {cal['ece']:.4f} over {cal['n']} entities at temperature {temperature:g}; report: {args.output_dir / 'report.html'}")
    for r in curve:
        print(f"threshold {r['threshold']:.1f}: P {100 * r['precision']:.2f}  R {100 * r['recall']:.2f}  F {100 * r['f']:.2f}")
    if args.benchmarks:
        write_benchmarks(args, cal, curve, temperature, fitted)


if __name__ == "__main__":
    main()
