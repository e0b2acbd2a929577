"""The `spacy_rnn_ner` command line (typer, like spaCy's own CLI)."""
import traceback
from pathlib import Path
from typing import NoReturn, Optional

import typer
from wasabi import msg

from .annotate import AnnotateError, annotate
from .annotate.engine import DEFAULT_DASK_TIMEOUT

app = typer.Typer(name="spacy_rnn_ner", add_completion=False, no_args_is_help=True)

# Exit codes of `annotate`; the numbers of AnnotateError.exit_code and its subclasses.
EXIT_CODES = {
    0: "done",
    1: "a bad input line stopped a --strict run",
    2: "bad options or usage",
    3: "the input cannot be read, or the output cannot be written or resumed",
    4: "the pipeline cannot be loaded, or fails on document after document",
    5: "the Dask scheduler cannot be reached, has no workers, or a task failed",
    6: "an unexpected error (a bug: rerun with --debug and report the traceback)",
    130: "interrupted (Ctrl-C): rerun with --resume",
}
UNEXPECTED, INTERRUPTED = 6, 130


@app.callback()
def main() -> None:
    """spacy-rnn-ner: a BiLSTM entity tagger for spaCy. Run a command with --help for its options."""


def _fail(text: str, code: int, debug: bool) -> NoReturn:
    """Report an error as one line on stderr (after the traceback with --debug) and exit with `code`."""
    if debug:
        typer.echo(traceback.format_exc(), err=True)
    typer.echo(f"✘ {' '.join(text.split())}", err=True)
    raise typer.Exit(code)


@app.command(
    "annotate",
    epilog="Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()) + ".",
)
def annotate_cli(
    model: str = typer.Argument(..., help="Trained pipeline: a directory or an installed package name"),
    input_path: Path = typer.Argument(..., help="Input: .txt (one document per line), .jsonl or .spacy", dir_okay=False),
    output_path: Path = typer.Argument(..., help="Output: .jsonl (one record per document) or .spacy", dir_okay=False),
    input_format: Optional[str] = typer.Option(None, "--input-format", "-if", help="text, jsonl or spacy (default: from the suffix)"),
    output_format: Optional[str] = typer.Option(None, "--output-format", "-of", help="jsonl or spacy (default: from the suffix)"),
    text_key: str = typer.Option("text", "--text-key", "-k", help="JSONL key that holds the text"),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Documents per nlp.pipe batch (at least 1)"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Processes for nlp.pipe (at least 1; see the README for when more help)"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run after its last complete record (only onto an output of this input)"),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad input line instead of writing an error record"),
    include_text: bool = typer.Option(False, "--include-text", help="Copy each document's text into its JSONL record"),
    dask: Optional[str] = typer.Option(None, "--dask", help="Dask scheduler address (tcp://host:8786), or local:N for N local workers"),
    dask_timeout: float = typer.Option(DEFAULT_DASK_TIMEOUT, "--dask-timeout", help="Seconds to reach the Dask scheduler and see a worker"),
    partition_size: int = typer.Option(500, "--partition-size", help="Documents per Dask partition (at least 1)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)"),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error"),
) -> None:
    """Annotate a corpus with a trained pipeline: one output record per input document, in order.

    A bad input line (invalid JSON, no text, bytes that are not UTF-8, a lone
    surrogate in the text, nesting deeper than 100) gives an error record
    naming its line, or stops the run with --strict. Entities carry character
    offsets, label and, where the pipeline provides one, a confidence score.
    Errors are reported as one line on stderr; the exit code says which kind.
    """
    try:
        stats = annotate(
            model, input_path, output_path, input_format=input_format, output_format=output_format,
            text_key=text_key, batch_size=batch_size, n_process=n_process, resume=resume, strict=strict,
            include_text=include_text, dask_address=dask, dask_timeout=dask_timeout, partition_size=partition_size,
            progress=progress, log=lambda text: msg.warn(text),
        )
    except AnnotateError as err:
        _fail(str(err), err.exit_code, debug)
    except KeyboardInterrupt:
        _fail(f"Interrupted: the documents annotated so far are in {output_path}; rerun with --resume to go on.", INTERRUPTED, debug)
    except Exception as err:
        _fail(f"Unexpected error ({type(err).__name__}: {err}): rerun with --debug and report the traceback.", UNEXPECTED, debug)
    if stats.skipped:
        msg.info(f"Resumed after {stats.skipped:,} documents already in {output_path}")
    msg.good(
        f"Annotated {stats.docs:,} documents ({stats.errors:,} errors), {stats.words:,} words in "
        f"{stats.seconds:.1f} s: {stats.words_per_second:,.0f} words/s -> {output_path}"
    )



@app.command("summary", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def summary_cli(
    ctx: typer.Context,
    model_or_config: str = typer.Argument(..., help="A trained pipeline (directory or package name) or a .cfg file"),
    component: Optional[str] = typer.Option(None, "--component", "-c", help="The component (default: the first rnn_tagger)"),
    labels: str = typer.Option("PER,LOC,ORG,MISC", "--labels", "-l", help="For a config: the labels to initialize with, comma-separated"),
) -> None:
    """Print the model summary: one row per layer (feature tables, character
    embedding, LSTM per layer and direction, document memory, window, output,
    CRF transitions) with its output shape on a sample batch and its parameter
    count, then the totals and the size on disk. Extra --section.key value
    pairs override the config, as for `spacy train`."""
    from .summary import config_overrides, summary_command

    try:
        summary_command(model_or_config, component, labels, config_overrides(ctx.args))
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)


@app.command("calibrate")
def calibrate_cli(
    model: str = typer.Argument(..., help="A trained pipeline (directory or package name)"),
    dev_path: Path = typer.Argument(..., help="Held-out data with gold entities (.spacy), e.g. the dev set", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="Where to save the calibrated pipeline (may be MODEL itself)"),
    component: str = typer.Option("rnn_tagger", "--component", "-c", help="The rnn_tagger component to calibrate"),
    train_path: Optional[Path] = typer.Option(
        None, "--train", help="The training corpus (.spacy): fit on the dev entities that are not entities there, as the default config does", exists=True, dir_okay=False
    ),
) -> None:
    """Fit the temperature of the entity confidences on DEV_PATH (lowest log
    loss) and save the pipeline with it in its config.cfg: what the default
    config's [training.before_to_disk] callback does, for a pipeline trained
    without it. With --train, only the dev entities new to the training data
    count, and the grid reaches 4 (the default config's calibration)."""
    import spacy

    from .calibration import TEMPERATURES, TEMPERATURES_V2, entity_texts, fit_temperature, set_setting
    from .scoring import gold_token_examples

    try:
        nlp = spacy.load(model)
        if component not in nlp.pipe_names:
            raise ValueError(f"[{component}] No component '{component}' in the pipeline ({', '.join(nlp.pipe_names)}); pass --component.")
        examples = gold_token_examples(nlp, dev_path)
        if train_path is None:
            best, rows = fit_temperature(nlp, component, examples, TEMPERATURES)
        else:
            best, rows = fit_temperature(nlp, component, examples, TEMPERATURES_V2, entity_texts(nlp, train_path))
        set_setting(nlp, component, "temperature", best)
        nlp.to_disk(output)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    for row in rows:
        typer.echo(f"temperature {row['temperature']:g}: log loss {row['log_loss']:.4f}, ECE {row['ece']:.4f} ({row['n']:,} entities)")
    msg.good(f"Temperature {best:g} (lowest log loss on {dev_path}) saved in {output / 'config.cfg'}")


if __name__ == "__main__":
    app()
