"""Input records and output files for `spacy_rnn_ner annotate`.

Inputs: plain text (one document per line), JSONL (one object per line, text
under a configurable key) and spaCy's `.spacy` DocBin files. Every document
line gives exactly one Record: a line that cannot be read (bytes that are not
UTF-8, invalid JSON, a lone surrogate in the text, nesting deeper than
MAX_DEPTH, a number too long for Python) gives a Record with an `error`.

Outputs: JSONL (one strict-JSON record per document) and `.spacy`. Beside the
output a small resume file (`OUTPUT.resume.json`) holds how many documents are
safely written and a SHA-256 fingerprint of their input lines, so that
`--resume` continues an interrupted run only on the input it was made from.
"""
import hashlib
import json
import math
import os
import re
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

INPUT_FORMATS = ("text", "jsonl", "spacy")
OUTPUT_FORMATS = ("jsonl", "spacy")

MAX_DEPTH = 100  # deepest nesting of JSON arrays and objects accepted in an input line
UTF8_BOM = b"\xef\xbb\xbf"
JSON_BLANK = b" \t\r"  # a JSONL line of only these is not a document
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
_MSGPACK_INT = (-(2**63), 2**64 - 1)  # the integers a msgpack (DocBin user_data) can hold


class AnnotateError(ValueError):
    """A problem that stops `annotate`, worded for the user; `exit_code` says which kind."""

    exit_code = 3


class BadLineError(AnnotateError):
    """--strict met a document that gives an error record."""

    exit_code = 1


class OptionError(AnnotateError):
    """An option value that cannot work (checked before anything is read or written)."""

    exit_code = 2


class InputOutputError(AnnotateError):
    """The input cannot be read, or the output cannot be written or resumed."""

    exit_code = 3


class PipelineError(AnnotateError):
    """The pipeline cannot be loaded, fails on document after document, or its worker process died."""

    exit_code = 4


class DaskError(AnnotateError):
    """The Dask scheduler cannot be reached, has no workers, or a task failed."""

    exit_code = 5


@dataclass
class Record:
    """One input document, or the reason it could not be read."""

    index: int  # position among the input documents, from 0
    line: Optional[int] = None  # line number in the input file, from 1 (None for .spacy)
    text: Optional[str] = None
    doc: Optional[Doc] = None
    meta: Any = None
    id: Any = None
    error: Optional[str] = None
    digest: bytes = b""  # hash of the input line (or .spacy text), for the resume fingerprint

    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"document {self.index}"


@dataclass
class Output:
    """What annotating one record produced: the JSON record, and the Doc for .spacy output."""

    record: Dict[str, Any]
    doc: Optional[Doc] = None
    n_words: int = 0
    error: Optional[str] = field(default=None)


def describe(err: BaseException, limit: int = 300) -> str:
    """'ValueError: first line of the message', short enough for a one-line report."""
    text = str(err).strip()
    first = text.splitlines()[-1 if text.startswith("Traceback") else 0] if text else ""
    first = first if len(first) <= limit else first[: limit - 3] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def detect_format(path: Path, given: Optional[str], allowed: tuple) -> str:
    """The file format: `given` if set, else from the suffix (.jsonl/.json, .spacy, anything else text)."""
    if given:
        if given not in allowed:
            raise OptionError(f"Unknown format {given!r} for {path}: choose one of {', '.join(allowed)}.")
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".spacy":
        return "spacy"
    if "text" not in allowed:
        raise OptionError(
            f"Cannot tell the output format of {path} from its suffix: name it .jsonl or .spacy, "
            "or pass --output-format."
        )
    return "text"


# --- Reading ---------------------------------------------------------------


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _document_lines(path: Path, fmt: str) -> Iterator[Tuple[int, bytes]]:
    """(line number, bytes) of each document line, without its line ending.

    Every line of a text file is a document; in JSONL a line of only JSON
    whitespace is not. A UTF-8 byte-order mark at the start of the file is
    dropped. There is no phantom line after a final newline.
    """
    try:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if raw.endswith(b"\n"):
                    raw = raw.rstrip(b"\r\n")
                if line_no == 1 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM) :]
                if fmt == "jsonl" and not raw.strip(JSON_BLANK):
                    continue
                yield line_no, raw
    except OSError as err:
        raise InputOutputError(f"Cannot read the input {path}: {err.strerror or describe(err)}.") from err


def _spacy_docs(path: Path, vocab: Vocab) -> Iterator[Doc]:
    """The docs of a .spacy file, one at a time, with a file error (not a traceback) when it is not one."""

    def unreadable(err: Exception) -> InputOutputError:
        if isinstance(err, OSError):
            return InputOutputError(f"Cannot read the input {path}: {err.strerror or describe(err)}.")
        return InputOutputError(
            f"Cannot read {path} as a .spacy file ({describe(err)}): give a file that DocBin.to_disk wrote, "
            "or set --input-format."
        )

    try:
        docs = DocBin().from_disk(path).get_docs(vocab)
    except Exception as err:
        raise unreadable(err) from err
    while True:
        try:
            doc = next(docs)
        except StopIteration:
            return
        except Exception as err:
            raise unreadable(err) from err
        yield doc


def input_digests(path: Path, fmt: str) -> Iterator[bytes]:
    """The fingerprint digest of each input document, in order, without parsing JSON."""
    if fmt == "spacy":
        for doc in _spacy_docs(path, Vocab()):
            yield _digest(doc.text.encode("utf8"))
    else:
        for _, raw in _document_lines(path, fmt):
            yield _digest(raw)


def read_records(
    path: Path, fmt: str, text_key: str = "text", vocab: Optional[Vocab] = None, skip: int = 0
) -> Iterator[Record]:
    """Yield one Record per input document after the first `skip`, in order; unreadable lines become error records."""
    if fmt == "spacy":
        for i, doc in enumerate(_spacy_docs(path, vocab if vocab is not None else Vocab())):
            if i < skip:
                continue
            data = doc.user_data or {}
            yield Record(
                index=i, text=doc.text, doc=doc, meta=data.get("meta"), id=data.get("id"),
                digest=_digest(doc.text.encode("utf8")),
            )
        return
    for index, (line_no, raw) in enumerate(_document_lines(path, fmt)):
        if index < skip:
            continue
        try:
            record = _line_record(raw, fmt, index, line_no, text_key)
        except Exception as err:  # whatever a line holds, it gives one record and the run goes on
            record = Record(index=index, line=line_no, error=f"unreadable line ({describe(err)})")
        record.digest = _digest(raw)
        yield record


def _line_record(raw: bytes, fmt: str, index: int, line_no: int, text_key: str) -> Record:
    try:
        line = raw.decode("utf8")
    except UnicodeDecodeError as err:
        return Record(index=index, line=line_no, error=f"bytes that are not UTF-8 at column {err.start + 1}")
    if fmt == "text":
        return Record(index=index, line=line_no, text=line)
    return _jsonl_record(line, index, line_no, text_key)


class _LongNumber(ValueError):
    """An integer with more digits than Python converts (sys.get_int_max_str_digits)."""


def _parse_int(digits: str) -> int:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if limit and len(digits.lstrip("-")) > limit:
        raise _LongNumber(len(digits.lstrip("-")), limit)
    return int(digits)


class _TooDeep(ValueError):
    """A JSON value nested deeper than MAX_DEPTH."""


def _jsonl_record(line: str, index: int, line_no: int, text_key: str) -> Record:
    def bad(error: str) -> Record:
        return Record(index=index, line=line_no, error=error)

    try:
        obj = json.loads(line, parse_int=_parse_int)
    except json.JSONDecodeError as err:
        return bad(f"invalid JSON ({err.msg} at column {err.colno})")
    except _LongNumber as err:
        digits, limit = err.args
        return bad(f"a number of {digits:,} digits (Python reads at most {limit:,}): write it as a string")
    except RecursionError:
        return bad(f"JSON nested deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, dict):
        return bad(f"expected a JSON object, got {type(obj).__name__}")
    try:
        _check_depth(obj, 0)
    except _TooDeep:
        return bad(f"JSON nested deeper than {MAX_DEPTH} levels")
    if text_key not in obj:
        return bad(f"no {text_key!r} key (set the text key with --text-key)")
    text = obj[text_key]
    if not isinstance(text, str):
        return bad(f"the {text_key!r} value is {type(text).__name__}, not a string")
    found = None if text.isascii() else _SURROGATE.search(text)
    if found is not None:
        return bad(
            f"the text holds a lone surrogate (\\u{ord(found.group()):04x}) at character {found.start()}, "
            "which is not Unicode: fix the escaping where the file was written"
        )
    return Record(index=index, line=line_no, text=text, meta=json_safe(obj.get("meta")), id=json_safe(obj.get("id")))


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _TooDeep()
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, (dict, list)):
                _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                _check_depth(item, depth + 1)


# --- Values that JSON and msgpack can hold ------------------------------------


def clean_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (same length, so offsets still hold)."""
    return text if text.isascii() else _SURROGATE.sub(_REPLACEMENT, text)


def json_safe(value: Any, depth: int = 0) -> Any:
    """A copy of `value` that is strict JSON: NaN and ±Infinity become null, lone surrogates
    U+FFFD, bytes UTF-8 text, tuples lists, other objects their str(); keys become strings."""
    if depth > MAX_DEPTH + 8:  # records wrap meta in a few levels of their own
        raise _TooDeep()
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_json_key(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf8", errors="replace")
    return clean_text(str(value))


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return clean_text(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(json_safe(key))  # what json.dumps does with such keys
    return clean_text(str(key))


def msgpack_safe(value: Any) -> Any:
    """json_safe(value), with integers beyond 64 bits as strings (a DocBin stores user_data as msgpack)."""
    value = json_safe(value)
    return _small_ints(value)


def _small_ints(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _MSGPACK_INT[0] <= value <= _MSGPACK_INT[1] else str(value)
    if isinstance(value, dict):
        return {k: _small_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_small_ints(v) for v in value]
    return value


def _dump(record: Dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf8")


def json_line(record: Dict[str, Any]) -> bytes:
    """The record as one line of strict JSON (RFC 8259) in UTF-8, whatever values it holds."""
    try:
        return _dump(record)
    except (ValueError, TypeError, RecursionError):
        pass  # NaN, a lone surrogate, bytes...: write the json_safe copy
    try:
        return _dump(json_safe(record))
    except (ValueError, TypeError, RecursionError) as err:
        head = {k: record[k] for k in ("index", "line") if isinstance(record.get(k), int)}
        return _dump({**head, "error": f"this document's record cannot be written as JSON ({describe(err)})"})


# --- The resume file ----------------------------------------------------------


def resume_file(output: Path) -> Path:
    """Where the resume fingerprint of `output` lives: OUTPUT.resume.json beside it."""
    return output.with_name(output.name + ".resume.json")


def _is_regular(path: Path) -> bool:
    """Whether `path` is (or would be created as) a regular file, which a resume file can follow."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # not there yet (or not reachable: the writer reports that)


class Progress:
    """How many documents are safely in the output, and the running fingerprint of their
    input lines; saved to the resume file each time the writer makes more documents safe."""

    def __init__(self, output: Path, input_path: Path, hasher: Any = None, documents: int = 0) -> None:
        self.path = resume_file(output)
        self.enabled = _is_regular(output)
        self.input = str(Path(input_path).resolve())
        self.hasher = hasher if hasher is not None else hashlib.sha256()
        self.documents = documents

    def advance(self, digests: Sequence[bytes]) -> None:
        """Count `digests` (those of the documents just made safe, in order) and save."""
        for digest in digests:
            self.hasher.update(digest)
        self.documents += len(digests)
        self.save()

    def save(self) -> None:
        if not self.enabled:
            return
        state = {"documents": self.documents, "sha256": self.hasher.hexdigest(), "input": self.input}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(state) + "\n", encoding="utf8")
        os.replace(tmp, self.path)


@dataclass
class ResumePoint:
    """Where a run starts: after `documents` input documents, whose fingerprint is in `hasher`."""

    documents: int = 0
    hasher: Any = None
    jsonl_bytes: int = 0  # JSONL output: the length of its first `documents` lines


def check_resume(input_path: Path, in_fmt: str, output: Path, out_fmt: str) -> ResumePoint:
    """Where a resumed run starts, after checking that `output` was written from this input.

    The resume file says how many documents are safely written (M) and the
    fingerprint of their input lines; the output must hold at least M complete
    records (more are dropped: a crash came between writing them and saving the
    resume file), and the first M documents of the input must have that
    fingerprint. Reads only: nothing is changed before the run starts.
    """
    parts = output.with_name(output.name + ".parts")
    if not output.exists() and not (out_fmt == "spacy" and parts.exists()):
        return ResumePoint(hasher=hashlib.sha256())
    if output.exists() and not _is_regular(output):
        raise InputOutputError(f"Cannot resume {output}: it is not a regular file. Start again without --resume.")

    def refuse(why: str, fix: str = "Start again without --resume (that overwrites it)") -> InputOutputError:
        return InputOutputError(f"Cannot resume {output}: {why}. {fix}.")

    state = _read_resume_file(resume_file(output))
    if state is None:
        if out_fmt == "jsonl" and output.stat().st_size == 0:
            return ResumePoint(hasher=hashlib.sha256())
        raise refuse(
            f"there is no valid {resume_file(output).name} beside it, so annotate cannot check which input it "
            "was written from"
        )
    wanted = state["documents"]
    if out_fmt == "jsonl":
        complete, end = _jsonl_prefix(output, wanted)
        ok = complete == wanted
    else:
        try:
            ok, complete = _docbin_prefix(output, parts, wanted)
        except Exception as err:
            raise refuse(f"a part of it cannot be read ({describe(err)})") from err
        end = 0
    if not ok:
        raise refuse(
            f"its resume file counts {wanted:,} documents, which it does not hold as whole records "
            f"({complete:,} found; was it changed after the run?)"
        )
    hasher, n_input = hashlib.sha256(), 0
    for digest in input_digests(input_path, in_fmt):
        if n_input == wanted:
            break
        hasher.update(digest)
        n_input += 1
    if n_input < wanted:
        raise refuse(
            f"it holds {wanted:,} documents but {input_path} has only {n_input:,}, so it was written from another "
            f"input ({state['input']})",
            "Give the input it was written from, or start again without --resume",
        )
    if hasher.hexdigest() != state["sha256"]:
        raise refuse(
            f"its first {wanted:,} documents were not written from these lines of {input_path} "
            f"(it was written from {state['input']}, and the fingerprints differ)",
            "Give the input it was written from, or start again without --resume",
        )
    return ResumePoint(documents=wanted, hasher=hasher, jsonl_bytes=end)


def _read_resume_file(path: Path) -> Optional[Dict[str, Any]]:
    try:
        state = json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(state, dict)
        and isinstance(state.get("documents"), int)
        and state["documents"] >= 0
        and isinstance(state.get("sha256"), str)
    )
    if not ok:
        return None
    state.setdefault("input", "an unknown input")
    return state


def _jsonl_prefix(path: Path, wanted: int) -> Tuple[int, int]:
    """How many of the first `wanted` lines of a JSONL output are complete records with the
    right index, and the byte length of those lines."""
    n, end = 0, 0
    with open(path, "rb") as f:
        for line in f:
            if n == wanted:
                break
            if not line.endswith(b"\n"):
                break  # a half-written last line
            head = b'{"index": %d' % n
            if not (line.startswith(head) and line[len(head) : len(head) + 1] in (b",", b"}")):
                raise InputOutputError(
                    f"Cannot resume {path}: line {n + 1} is not the record of document {n}. Start again "
                    "without --resume, or remove the damaged lines."
                )
            n += 1
            end += len(line)
    return n, end


def _part_files(parts: Path) -> List[Path]:
    return sorted(parts.glob("part-*.spacy"))


def _docbin_prefix(path: Path, parts: Path, wanted: int) -> Tuple[bool, int]:
    """Whether whole parts of a .spacy output (or its finished file) hold exactly its first
    `wanted` documents, and how many documents it holds."""
    if parts.exists():
        sizes = [len(DocBin().from_disk(part)) for part in _part_files(parts)]
    else:
        sizes = [len(DocBin().from_disk(path))]
    total, ok = 0, wanted == 0
    for size in sizes:
        total += size
        ok = ok or total == wanted
    return ok, total


# --- Writers -------------------------------------------------------------------


def _write_error(path: Path, err: OSError, n_written: int) -> InputOutputError:
    reason = err.strerror or describe(err)
    return InputOutputError(
        f"Cannot write {path} ({reason}) after {n_written:,} documents: free some space or choose a writable "
        "folder, then rerun with --resume."
    )


class JsonlWriter:
    """Appends one strict-JSON line per record; each batch is one write, flushed at once, and
    then counted in the resume file."""

    def __init__(self, path: Path, progress: Progress, point: Optional[ResumePoint] = None) -> None:
        self.path = Path(path)
        self.progress = progress
        self.failed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if point is not None:
                self.file = open(self.path, "ab")
                if progress.enabled:
                    self.file.truncate(point.jsonl_bytes)  # drop records after the last counted one
            else:
                self.file = open(self.path, "wb")
            progress.save()
        except OSError as err:
            self.failed = True
            raise _write_error(self.path, err, progress.documents) from err

    @property
    def n_done(self) -> int:
        return self.progress.documents

    def write(self, outputs: List[Output], digests: Sequence[bytes]) -> None:
        if not outputs or self.failed:
            return
        data = b"".join(json_line(o.record) for o in outputs)
        try:
            self.file.write(data)
            self.file.flush()
            self.progress.advance(digests)
        except OSError as err:
            self.failed = True
            raise _write_error(self.path, err, self.progress.documents) from err

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as err:
            if not self.failed:
                self.failed = True
                raise _write_error(self.path, err, self.progress.documents) from err


class DocBinWriter:
    """Writes `.spacy` output as numbered parts, each renamed into place when complete (and
    then counted in the resume file), and merges them into one DocBin at the end. A crash
    leaves only whole parts, which --resume counts."""

    def __init__(
        self, path: Path, progress: Progress, point: Optional[ResumePoint] = None, part_size: int = 1000
    ) -> None:
        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.progress = progress
        self.part_size = part_size
        self.buffer: List[Tuple[Doc, bytes]] = []
        self.failed = False
        try:
            self._arrange(point)
            progress.save()
        except OSError as err:
            self.failed = True
            raise _write_error(self.path, err, progress.documents) from err

    def _arrange(self, point: Optional[ResumePoint]) -> None:
        """Leave exactly the parts that hold the documents a resumed run keeps (none for a new run)."""
        if point is None or point.documents == 0:
            shutil.rmtree(self.parts, ignore_errors=True)
        elif not self.parts.exists():
            # A finished run: continue from its file as the first part.
            self.parts.mkdir(parents=True)
            shutil.move(str(self.path), str(self.parts / "part-000000.spacy"))
        self.parts.mkdir(parents=True, exist_ok=True)
        for tmp in self.parts.glob("*.tmp"):
            tmp.unlink()
        kept = 0
        for part in _part_files(self.parts):
            if point is None or kept >= point.documents:
                part.unlink()  # written after the resume file's count: annotated again
            else:
                kept += len(DocBin().from_disk(part))

    @property
    def n_done(self) -> int:
        return self.progress.documents

    def write(self, outputs: List[Output], digests: Sequence[bytes]) -> None:
        if self.failed:
            return
        self.buffer.extend((o.doc, d) for o, d in zip(outputs, digests) if o.doc is not None)
        while len(self.buffer) >= self.part_size:
            self._flush(self.buffer[: self.part_size])
            self.buffer = self.buffer[self.part_size :]

    def _flush(self, items: List[Tuple[Doc, bytes]]) -> None:
        if not items:
            return
        try:
            target = self.parts / f"part-{len(_part_files(self.parts)):06d}.spacy"
            tmp = target.with_suffix(".tmp")
            DocBin(docs=[doc for doc, _ in items], store_user_data=True).to_disk(tmp)
            os.replace(tmp, target)
            self.progress.advance([d for _, d in items])
        except OSError as err:
            self.failed = True
            raise _write_error(self.path, err, self.progress.documents) from err

    def close(self) -> None:
        if self.failed:
            return
        self._flush(self.buffer)
        self.buffer = []
        try:
            merged = DocBin(store_user_data=True)
            for part in _part_files(self.parts):
                merged.merge(DocBin(store_user_data=True).from_disk(part))
            tmp = self.path.with_name(self.path.name + ".tmp")
            merged.to_disk(tmp)
            os.replace(tmp, self.path)
        except OSError as err:
            self.failed = True
            raise _write_error(self.path, err, self.progress.documents) from err
        shutil.rmtree(self.parts, ignore_errors=True)


def open_writer(path: Path, fmt: str, progress: Progress, point: Optional[ResumePoint] = None):
    """The writer for `fmt` ("jsonl" or "spacy"); `point` continues a resumed run."""
    if fmt == "jsonl":
        return JsonlWriter(path, progress, point)
    return DocBinWriter(path, progress, point)
