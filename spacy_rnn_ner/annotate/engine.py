"""Run a trained pipeline over a corpus: one output record per input document,
in input order, with resume after a crash and optional Dask workers.

The command line is in `spacy_rnn_ner.cli`; this module is the engine, usable
from Python as `annotate(model, input_path, output_path, ...)`.
"""
import itertools
import math
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .io import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    AnnotateError,
    BadLineError,
    DaskError,
    InputOutputError,
    OptionError,
    Output,
    PipelineError,
    Progress,
    Record,
    ResumePoint,
    check_resume,
    clean_text,
    describe,
    detect_format,
    msgpack_safe,
    open_writer,
    read_records,
)

WRITE_EVERY = 256  # records per write: a crash loses at most this many
DEFAULT_DASK_TIMEOUT = 10.0  # seconds to reach a Dask scheduler and see a worker


@dataclass
class AnnotateStats:
    """Counts for the run (this invocation only; `skipped` were done by an earlier run)."""

    docs: int = 0
    errors: int = 0
    words: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0


def entity_scores(doc: Doc) -> Dict[Tuple[int, int, str], float]:
    """Confidence per (start_char, end_char, label) from any span group that carries scores
    (rnn_tagger keeps them in doc.spans[spans_key].attrs["scores"])."""
    found: Dict[Tuple[int, int, str], float] = {}
    for group in doc.spans.values():
        scores = group.attrs.get("scores")
        if scores is None or len(scores) != len(group):
            continue
        for span, score in zip(group, scores):
            found.setdefault((span.start_char, span.end_char, span.label_), float(score))
    return found


def doc_record(doc: Doc, record: Record, include_text: bool = False) -> Dict[str, Any]:
    """The JSON record for an annotated document: its index, line, id, meta and entities."""
    out = _record_head(record)
    if include_text:
        out["text"] = doc.text
    scores = entity_scores(doc)
    ents = []
    for ent in doc.ents:
        item: Dict[str, Any] = {"start": ent.start_char, "end": ent.end_char, "label": ent.label_, "text": ent.text}
        score = scores.get((ent.start_char, ent.end_char, ent.label_))
        if score is not None and math.isfinite(score):
            item["score"] = round(score, 6)
        ents.append(item)
    out["ents"] = ents
    return out


def _record_head(record: Record) -> Dict[str, Any]:
    out: Dict[str, Any] = {"index": record.index}
    if record.line is not None:
        out["line"] = record.line
    if record.id is not None:
        out["id"] = record.id
    if record.meta is not None:
        out["meta"] = record.meta
    return out


def _user_data(**values: Any) -> Dict[str, Any]:
    """Values for doc.user_data that a DocBin can store (msgpack: no NaN trouble, 64-bit integers)."""
    safe = {}
    for key, value in values.items():
        try:
            safe[key] = msgpack_safe(value)
        except ValueError:  # nested too deeply to store
            safe[key] = None
    return safe


def error_output(record: Record, vocab: Vocab) -> Output:
    """An error record in place of a document that could not be read or processed."""
    out = _record_head(record)
    out["error"] = record.error
    doc = Doc(vocab)
    doc.user_data.update(_user_data(index=record.index, line=record.line, error=record.error))
    return Output(record=out, doc=doc, error=error_text(out))


def error_text(record: Dict[str, Any]) -> Optional[str]:
    """"line 7: invalid JSON ..." for an error record, None for a good one."""
    if "error" not in record:
        return None
    where = f"line {record['line']}" if "line" in record else f"document {record['index']}"
    return clean_text(f"{where}: {record['error']}")


def _doc_output(doc: Doc, record: Record, include_text: bool, want_docs: bool) -> Output:
    if want_docs:
        doc.user_data.update(_user_data(index=record.index, line=record.line, id=record.id, meta=record.meta))
    return Output(record=doc_record(doc, record, include_text), doc=doc if want_docs else None, n_words=len(doc))


def annotate_records(
    nlp: Language,
    records: Iterable[Record],
    batch_size: int = 256,
    n_process: int = 1,
    include_text: bool = False,
    want_docs: bool = False,
) -> Iterator[Output]:
    """Run nlp.pipe over the readable records; yield one Output per record, in input order.

    Error records bypass the pipeline and are put back in their place: the
    records nlp.pipe has read ahead wait in `pending` until their doc comes back.
    If nlp.pipe raises, the records it held are annotated one at a time (a
    document the pipeline fails on gives an error record) and nlp.pipe goes on
    with the rest of the input.
    """
    pending: Deque[Record] = deque()
    max_length = nlp.max_length
    source = iter(records)

    def inputs() -> Iterator[Tuple[Union[str, Doc], int]]:
        for record in source:
            if record.error is None and record.text is not None and len(record.text) > max_length:
                record.error = (
                    f"text of {len(record.text):,} characters is longer than the pipeline's "
                    f"max_length ({max_length:,}): split it, or raise nlp.max_length"
                )
            pending.append(record)
            if record.error is None:
                yield (record.doc if record.doc is not None else record.text), record.index  # type: ignore[misc]

    feed = inputs()
    stream = nlp.pipe(feed, as_tuples=True, batch_size=batch_size, n_process=n_process)
    failures = _FailureCount()
    while True:
        try:
            doc, index = next(stream)
        except StopIteration:
            break
        except Exception as err:
            held = list(pending)
            pending.clear()
            yield from _one_at_a_time(nlp, held, err, failures, include_text, want_docs)
            stream = nlp.pipe(feed, as_tuples=True, batch_size=batch_size, n_process=n_process)
            continue
        failures.in_a_row = 0
        while pending[0].index != index:
            yield error_output(pending.popleft(), nlp.vocab)
        yield _doc_output(doc, pending.popleft(), include_text, want_docs)
    while pending:
        yield error_output(pending.popleft(), nlp.vocab)


MAX_FAILURES_IN_A_ROW = 20  # documents the pipeline fails on, one after another, before the run stops


@dataclass
class _FailureCount:
    in_a_row: int = 0


def _one_at_a_time(
    nlp: Language, records: List[Record], batch_error: Exception, failures: _FailureCount, include_text: bool,
    want_docs: bool,
) -> List[Output]:
    """Annotate the records of a batch that failed one by one; those that fail alone become error
    records. When the pipeline fails on many documents in a row, it is broken: stop."""
    outputs = []
    for record in records:
        if record.error is None:
            try:
                doc = nlp(record.doc if record.doc is not None else record.text)  # type: ignore[arg-type]
            except Exception as err:
                record.error = f"the pipeline failed on this document ({describe(err)})"
                failures.in_a_row += 1
                if failures.in_a_row >= MAX_FAILURES_IN_A_ROW:
                    raise PipelineError(
                        f"The pipeline failed on {failures.in_a_row} documents in a row ({describe(err)}): check that "
                        "nlp(text) works on a few of them, and that the pipeline was made for this spaCy version."
                    ) from err
            else:
                failures.in_a_row = 0
                outputs.append(_doc_output(doc, record, include_text, want_docs))
                continue
        outputs.append(error_output(record, nlp.vocab))
    return outputs


def load_pipeline(model: Union[str, Path, Language]) -> Language:
    """spacy.load (or the given Language), with a message that says what to check when it fails."""
    if isinstance(model, Language):
        return model
    try:
        return spacy.load(model)
    except Exception as err:
        raise PipelineError(
            f"Cannot load the pipeline {str(model)!r} ({describe(err)}): give a directory that `spacy train` or "
            "`nlp.to_disk` wrote, or the name of an installed pipeline package."
        ) from err


# --- Checks before anything is read or written ---------------------------------

_DASK_LOCAL = re.compile(r"local(?::(.*))?")
_DASK_REMOTE = re.compile(
    r"(?:(?P<scheme>tcp|tls|ws|wss|ucx)://)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})"
)


def parse_dask_address(address: str) -> Tuple[str, Union[str, int]]:
    """("local", number of workers) for local[:N], or ("remote", "scheme://host:port")."""
    local = _DASK_LOCAL.fullmatch(address)
    if local:
        count = local.group(1)
        if count is None:
            return "local", 2
        if not count.isdigit() or int(count) < 1:
            raise OptionError(f"--dask {address!r}: local:N needs a number of workers of at least 1, like local:2.")
        return "local", int(count)
    remote = _DASK_REMOTE.fullmatch(address)
    if remote is None or not 1 <= int(remote.group("port")) <= 65535:
        raise OptionError(
            f"--dask {address!r} is not a Dask scheduler address: give tcp://HOST:PORT (port 8786 unless the "
            "scheduler was started with another), or local:N for N local workers."
        )
    return "remote", f"{remote.group('scheme') or 'tcp'}://{remote.group('host')}:{remote.group('port')}"


def check_options(
    batch_size: int = 256,
    n_process: int = 1,
    partition_size: int = 500,
    dask_address: Optional[str] = None,
    dask_timeout: float = DEFAULT_DASK_TIMEOUT,
    model: Any = None,
) -> None:
    """Raise OptionError for option values that cannot work, before anything is loaded or written."""
    for flag, value in (("--batch-size", batch_size), ("--n-process", n_process), ("--partition-size", partition_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"{flag} must be a whole number of at least 1, not {value!r}.")
    if isinstance(dask_timeout, bool) or not isinstance(dask_timeout, (int, float)) or not 0 < dask_timeout < math.inf:
        raise OptionError(f"--dask-timeout must be a positive number of seconds, not {dask_timeout!r}.")
    if dask_address is not None:
        parse_dask_address(dask_address)
        if n_process != 1:
            raise OptionError("--n-process does not apply with --dask (each worker is one process): start more workers.")
        if isinstance(model, Language):
            raise OptionError("With --dask, give the pipeline as a path or package name that the workers can load.")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_paths(input_path: Path, output_path: Path) -> None:
    """Raise InputOutputError for an input that cannot be read or an output that must not be written."""
    if not input_path.exists():
        raise InputOutputError(f"Input file not found: {input_path}: check the path.")
    if input_path.is_dir():
        raise InputOutputError(f"The input {input_path} is a folder: give a file.")
    if not os.access(input_path, os.R_OK):
        raise InputOutputError(f"Cannot read the input {input_path}: permission denied.")
    # By inode, not by name: a hard link or symlink to the input is the input.
    if _same_file(input_path, output_path):
        raise InputOutputError(
            f"The output {output_path} is the input file itself (the same file, by another name): "
            "choose another output path."
        )
    if output_path.is_dir():
        raise InputOutputError(f"The output {output_path} is a folder: give a file name inside it.")
    folder = output_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputOutputError(f"Cannot write {output_path}: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputOutputError(f"Cannot write {output_path}: the folder {folder} is not writable. Choose another output path.")


def _progress_bar(enabled: Optional[bool]):
    from tqdm import tqdm

    on = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(unit="doc", disable=not on, file=sys.stderr, dynamic_ncols=True)


def annotate(
    model: Union[str, Path, Language],
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    input_format: Optional[str] = None,
    output_format: Optional[str] = None,
    text_key: str = "text",
    batch_size: int = 256,
    n_process: int = 1,
    resume: bool = False,
    strict: bool = False,
    include_text: bool = False,
    dask_address: Optional[str] = None,
    dask_timeout: float = DEFAULT_DASK_TIMEOUT,
    partition_size: int = 500,
    progress: Optional[bool] = None,
    log: Optional[Callable[[str], Any]] = None,
) -> AnnotateStats:
    """Annotate every document of `input_path` with the pipeline `model` into `output_path`.

    model: a pipeline directory, an installed package name, or a loaded Language.
    resume: continue an interrupted run after its last complete record (only
        onto an output that was written from this input: see OUTPUT.resume.json).
    strict: stop at the first document that gives an error record instead.
    dask_address: a Dask scheduler address ("tcp://host:8786"), or "local:N"
        for a local cluster of N worker processes; each worker loads the
        pipeline once and annotates partitions of `partition_size` documents
        (rounded up to a whole number of batches). `dask_timeout`: seconds to
        reach the scheduler and see a worker.
    progress: show a progress bar (default: only when stderr is a terminal).
    log: called with a one-line description of each error record, and with
        notes on settings that slow the run down.
    Raises an AnnotateError subclass (its exit_code says which kind) for
    problems the user can fix.
    """
    check_options(batch_size, n_process, partition_size, dask_address, dask_timeout, model)
    input_path, output_path = Path(input_path), Path(output_path)
    in_fmt = detect_format(input_path, input_format, INPUT_FORMATS)
    out_fmt = detect_format(output_path, output_format, OUTPUT_FORMATS)
    check_paths(input_path, output_path)
    point: Optional[ResumePoint] = None
    try:
        point = check_resume(input_path, in_fmt, output_path, out_fmt) if resume else None
    except OSError as err:
        raise InputOutputError(
            f"Cannot resume {output_path}: {err.strerror or describe(err)} ({err.filename or output_path})."
        ) from err
    # The pipeline (or the Dask cluster) comes before the output is opened, so
    # that a pipeline that does not load leaves an existing output as it was.
    dask = _DaskSession(dask_address, dask_timeout) if dask_address else None
    try:
        nlp = load_pipeline(model) if dask is None else None
        done = point.documents if point is not None else 0
        writer = open_writer(
            output_path, out_fmt, Progress(output_path, input_path, point.hasher if point else None, done), point
        )
        return _run(
            nlp, dask, str(model), writer, input_path, in_fmt, out_fmt, text_key, batch_size, n_process,
            strict, include_text, partition_size, progress, log,
        )
    finally:
        if dask is not None:
            dask.close()


def _run(
    nlp: Optional[Language], dask: Optional["_DaskSession"], model: str, writer, input_path: Path, in_fmt: str,
    out_fmt: str, text_key: str, batch_size: int, n_process: int, strict: bool, include_text: bool,
    partition_size: int, progress: Optional[bool], log: Optional[Callable[[str], Any]],
) -> AnnotateStats:
    """Read, annotate and write; everything annotated before a stop (--strict, Ctrl-C, a full disk
    after it is freed) is written whole, so that --resume goes on from there."""
    done = writer.n_done
    stats = AnnotateStats(skipped=done)
    bar = _progress_bar(progress)
    buffer: List[Output] = []
    want_docs = out_fmt == "spacy"
    vocab = nlp.vocab if nlp is not None else Vocab()
    max_length = nlp.max_length if nlp is not None else None
    first = replay_start(read_records(input_path, in_fmt, text_key, vocab), done, batch_size, max_length)
    reader = _Reader(read_records(input_path, in_fmt, text_key, vocab, skip=first), strict, done)
    start = time.perf_counter()

    def flush() -> None:
        if not buffer:
            return
        writer.write(buffer, [reader.digests.popleft() for _ in buffer])
        for out in buffer:
            if out.error is not None:
                stats.errors += 1
                if log is not None:
                    log(out.error)
        stats.docs += len(buffer)
        stats.words += sum(o.n_words for o in buffer)
        stats.seconds = time.perf_counter() - start
        bar.update(len(buffer))
        bar.set_postfix_str(f"{stats.words_per_second:,.0f} words/s", refresh=False)
        buffer.clear()

    if dask is not None:
        outputs = dask.outputs(model, iter(reader), batch_size, include_text, want_docs, partition_size)
    elif n_process > 1 and _can_fork():
        assert nlp is not None
        outputs = _forked_outputs(nlp, iter(reader), batch_size, n_process, include_text, want_docs, log)
    else:
        assert nlp is not None
        outputs = annotate_records(nlp, iter(reader), batch_size, n_process, include_text, want_docs)
    failed: Optional[str] = None
    try:
        for out in outputs:
            if out.record["index"] < done:  # replayed only to fill its batch as the first run did
                continue
            if strict and out.error is not None:  # an error found after reading (too long, pipeline failure)
                failed = out.error
                break
            buffer.append(out)
            if len(buffer) >= WRITE_EVERY:
                flush()
        flush()
    except BaseException:
        # On the way out of another error, write what was annotated, but let a
        # failure to do so not hide the error that stopped the run.
        for step in (lambda: flush() if not writer.failed else None, outputs.close, bar.close, writer.close):
            try:
                step()
            except Exception:
                pass
        raise
    outputs.close()
    bar.close()
    writer.close()
    if reader.error is not None:
        raise reader.error
    if reader.bad is not None:
        failed = f"{reader.bad.where()}: {reader.bad.error}"
    if failed is not None:
        raise BadLineError(
            f"Bad input at {failed}. --strict stopped the run there; the documents before it are written. "
            "Fix the line and rerun with --resume (or drop --strict to get an error record for it)."
        )
    return stats


class _Reader:
    """Passes records through and keeps their digests until they are written; ends the stream
    (so that everything before is still annotated and written) at the first bad record under
    --strict, or when reading fails, and remembers why."""

    def __init__(self, records: Iterable[Record], strict: bool, done: int = 0) -> None:
        self.records = records
        self.strict = strict
        self.done = done  # records before this index are already written (replayed, never written again)
        self.digests: Deque[bytes] = deque()
        self.bad: Optional[Record] = None
        self.error: Optional[Exception] = None

    def __iter__(self) -> Iterator[Record]:
        records = iter(self.records)
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as err:  # raised once the records before it are written
                self.error = err
                return
            if record.index < self.done:
                yield record
                continue
            if self.strict and record.error is not None:
                self.bad = record
                return
            self.digests.append(record.digest)
            yield record


def replay_start(records: Iterable[Record], done: int, batch_size: int, max_length: Optional[int]) -> int:
    """Where a run resumed after `done` documents starts reading: the first document of the
    batch that the resume point falls in, so that every batch holds the same documents as in
    an uninterrupted run.

    A document's confidences depend in their last digits on which documents share its batch
    (the matrix products' rounding varies with their shapes), so a resume that started its
    batches at `done` would write records that differ from the uninterrupted run's. The
    documents before `done` are annotated again and dropped. Batches count the documents
    that reach the pipeline: error records do not.
    """
    if done == 0:
        return 0
    start, n_fed = done, 0
    for record in itertools.islice(records, done):
        if record.error is not None or (max_length is not None and len(record.text or "") > max_length):
            continue
        if n_fed % batch_size == 0:
            start = record.index
        n_fed += 1
    return done if n_fed % batch_size == 0 else start


# --- Worker processes (Dask, or forked for n_process) ---------------------------

_WORKER_PIPELINES: Dict[str, Language] = {}


def _worker_pipeline(model: str) -> Language:
    """Load the pipeline once per worker process and keep it for later partitions."""
    if model not in _WORKER_PIPELINES:
        import torch

        torch.set_num_threads(1)  # one task per worker thread; avoid oversubscribing the cores
        try:
            _WORKER_PIPELINES[model] = spacy.load(model)
        except Exception as err:
            raise PipelineError(
                f"A Dask worker cannot load the pipeline {model!r} ({describe(err)}): install it on every worker, "
                "or give a path that every worker sees."
            ) from None
    return _WORKER_PIPELINES[model]


def annotate_partition(
    model: str, records: List[Record], docs: Optional[bytes], batch_size: int, include_text: bool, want_docs: bool
) -> Tuple[List[Dict[str, Any]], List[int], Optional[bytes]]:
    """Run on a Dask worker: annotate one partition. Docs travel as DocBin bytes."""
    return _annotate_part(_worker_pipeline(model), records, docs, batch_size, include_text, want_docs)


def _annotate_part(
    nlp: Language, records: List[Record], docs: Optional[bytes], batch_size: int, include_text: bool, want_docs: bool
) -> Tuple[List[Dict[str, Any]], List[int], Optional[bytes]]:
    """Annotate a partition in a worker process; what comes back is plain records (and, for
    .spacy output, one DocBin), which cross between processes far cheaper than one Doc each."""
    if docs is not None:
        given = iter(DocBin().from_bytes(docs).get_docs(nlp.vocab))
        for record in records:
            if record.error is None and record.text is not None and record.doc is None:
                record.doc = next(given)
    outputs = list(annotate_records(nlp, records, batch_size, 1, include_text, want_docs))
    out_docs = DocBin(docs=[o.doc for o in outputs], store_user_data=True).to_bytes() if want_docs else None
    return [o.record for o in outputs], [o.n_words for o in outputs], out_docs


def _unpack_part(
    result: Tuple[List[Dict[str, Any]], List[int], Optional[bytes]], vocab: Vocab
) -> Iterator[Output]:
    dicts, n_words, docs = result
    doc_list = list(DocBin().from_bytes(docs).get_docs(vocab)) if docs is not None else [None] * len(dicts)
    for record, words, doc in zip(dicts, n_words, doc_list):
        yield Output(record=record, doc=doc, n_words=words, error=error_text(record))


def _partitions(records: Iterable[Record], size: int) -> Iterator[Tuple[List[Record], Optional[bytes]]]:
    """Cut the records into partitions of `size` readable records (error records ride along).

    With `size` a multiple of the batch size, each worker's nlp.pipe batches
    hold exactly the docs of the single-process run's batches, so even the
    last digits of the confidences match (they depend slightly on which docs
    share a batch).
    """
    part: List[Record] = []
    n_good = 0
    for record in records:
        part.append(record)
        n_good += record.error is None
        if n_good == size:
            yield _payload(part)
            part, n_good = [], 0
    if part:
        yield _payload(part)


def _payload(part: List[Record]) -> Tuple[List[Record], Optional[bytes]]:
    docs = [r.doc for r in part if r.doc is not None and r.error is None]
    # user_data costs a msgpack call per doc each way; leave it out when no doc has any
    # (the meta and id a run writes travel in the records).
    keep_user_data = any(doc.user_data for doc in docs)
    payload = DocBin(docs=docs, store_user_data=keep_user_data).to_bytes() if docs else None
    for r in part:
        r.doc = None  # Docs do not pickle cheaply; they travel in the DocBin
        r.digest = b""  # the client keeps the digests
    return part, payload


# --- Several local processes ----------------------------------------------------

SHORT_DOC_WORDS = 50  # below this mean length, .spacy output was slower with 2 processes than with 1


def _note_short_docs(part: List[Record], n_process: int, log: Callable[[str], Any]) -> None:
    texts = [r.text for r in part if r.error is None and r.text is not None]
    mean = sum(len(t.split()) for t in texts) / len(texts) if texts else 0.0
    if texts and mean < SHORT_DOC_WORDS:
        log(
            f"--n-process {n_process} with .spacy output: these documents have {mean:.0f} words on average, and "
            f"below about {SHORT_DOC_WORDS} the docs' serialization between processes costs more than the extra "
            "processes save. For speed, use --n-process 1 or JSONL output."
        )

_FORKED_PIPELINE: Optional[Language] = None  # the pipeline forked workers inherit from the parent


def _can_fork() -> bool:
    """Forked workers inherit the loaded pipeline; only Linux forks safely with torch loaded."""
    return sys.platform.startswith("linux")


def _annotate_forked(
    records: List[Record], docs: Optional[bytes], batch_size: int, include_text: bool, want_docs: bool
) -> Tuple[List[Dict[str, Any]], List[int], Optional[bytes]]:
    """Run in a forked worker: annotate one partition with the inherited pipeline."""
    assert _FORKED_PIPELINE is not None
    return _annotate_part(_FORKED_PIPELINE, records, docs, batch_size, include_text, want_docs)


def _forked_outputs(
    nlp: Language, records: Iterable[Record], batch_size: int, n_process: int, include_text: bool, want_docs: bool,
    log: Optional[Callable[[str], Any]] = None,
) -> Iterator[Output]:
    """n_process > 1: forked worker processes annotate partitions of one batch each, a few
    ahead, and the outputs come back in input order.

    spaCy's own nlp.pipe(n_process=...) sends every Doc back serialized
    (Doc.to_bytes / from_bytes, a few milliseconds per doc here, mostly in
    msgpack's encoder lookup), which made two processes slower than one on
    short documents. Here a worker sends back the finished JSON records. Each
    partition is one whole batch, so the confidences match a 1-process run.
    For .spacy output the docs still cross as a DocBin (and are written as one
    again), which costs more than a second process saves on short documents:
    `log` gets a note when the first partition's documents are short.
    """
    global _FORKED_PIPELINE
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    import multiprocessing

    _FORKED_PIPELINE = nlp
    pool = ProcessPoolExecutor(max_workers=n_process, mp_context=multiprocessing.get_context("fork"))
    in_flight: Deque = deque()

    def drain_one() -> Iterator[Output]:
        try:
            result = in_flight.popleft().result()
        except BrokenProcessPool as err:
            raise PipelineError(
                f"A worker process died ({describe(err)}; killed for lack of memory?): rerun with --resume, "
                "with fewer --n-process or a smaller --batch-size."
            ) from err
        yield from _unpack_part(result, nlp.vocab)

    try:
        for part, payload in _partitions(records, batch_size):
            if want_docs and log is not None and not in_flight:
                _note_short_docs(part, n_process, log)
                log = None  # once
            in_flight.append(pool.submit(_annotate_forked, part, payload, batch_size, include_text, want_docs))
            while len(in_flight) > 2 * n_process:
                yield from drain_one()
        while in_flight:
            yield from drain_one()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _FORKED_PIPELINE = None


class _DaskSession:
    """A Dask client (and, for local:N, its local cluster), connected with a timeout."""

    def __init__(self, address: str, timeout: float) -> None:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise DaskError(
                "--dask needs Dask distributed: pip install 'spacy-rnn-ner[dask]' (on the client and every worker)."
            ) from None
        kind, where = parse_dask_address(address)
        self.address = address
        self.cluster = None
        self.client = None
        try:
            if kind == "local":
                self.cluster = LocalCluster(
                    n_workers=int(where), threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
                )
                self.client = Client(self.cluster, timeout=timeout)
            else:
                self.client = Client(str(where), timeout=timeout)
        except Exception as err:
            self.close()
            raise DaskError(
                f"Cannot reach the Dask scheduler at {address} within {timeout:g} s ({describe(err)}): start it "
                "(`dask scheduler`), check --dask, or raise --dask-timeout."
            ) from err
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except Exception as err:
            self.close()
            raise DaskError(
                f"The Dask scheduler at {address} has no worker after {timeout:g} s ({describe(err)}): start some "
                f"(`dask worker {where} --nthreads 1`), or raise --dask-timeout."
            ) from err

    def outputs(
        self, model: str, records: Iterable[Record], batch_size: int, include_text: bool, want_docs: bool,
        partition_size: int,
    ) -> Iterator[Output]:
        """Submit partitions to the workers, a few ahead, and yield their outputs in input order."""
        client = self.client
        assert client is not None
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        in_flight: Deque = deque()
        vocab = Vocab()

        def drain_one() -> Iterator[Output]:
            try:
                result = in_flight.popleft().result()
            except AnnotateError:
                raise
            except Exception as err:
                raise DaskError(
                    f"A Dask task failed ({describe(err)}): check the workers' logs, then rerun with --resume."
                ) from err
            yield from _unpack_part(result, vocab)

        size = max(1, -(-partition_size // batch_size)) * batch_size  # a whole number of batches
        try:
            for part, payload in _partitions(records, size):
                in_flight.append(
                    client.submit(annotate_partition, model, part, payload, batch_size, include_text, want_docs, pure=False)
                )
                while len(in_flight) > 2 * n_workers:
                    yield from drain_one()
            while in_flight:
                yield from drain_one()
        finally:
            for future in in_flight:
                future.cancel()

    def close(self) -> None:
        for thing in (self.client, self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass  # closing after a failure: the failure is what the user needs to see
        self.client = self.cluster = None
