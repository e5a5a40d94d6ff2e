"""Text sources: corpora that yield documents (plain strings), by registry name.

``iter_documents(corpus, split, **options)`` is the one entry point; ``t5lit list corpora`` shows the names.

- ``builtin``: an offline English corpus made at run time from the docstrings of a fixed list of standard
  library modules (their modules, classes, functions and methods). It exists on every Python install, so
  tests, examples and smoke runs need no download. ``builtin_records(split)`` gives the same documents with
  their provenance (module, qualname, kind) for the built-in downstream tasks.
- ``c4``: C4 (paper Section 2.2) from the Hugging Face hub, streamed, sharded across DDP ranks and DataLoader
  workers.
- ``hf``: any Hugging Face dataset with a text field.
- ``files``: local ``.txt`` (blank-line separated documents), ``.jsonl`` / ``.jsonl.gz`` / ``.json.gz``
  (C4's own shard format, field ``text``) and ``.parquet`` (column ``text``).

Bytes that are not UTF-8 are replaced with U+FFFD, counted into ``SourceStats.replaced_bytes`` and reported
with a warning (the token cache stores the count in its metadata).
"""

from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import importlib
import inspect
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from t5lit.registry import ConfigError, Registry

CORPORA: Registry[Callable[..., Iterator[str]]] = Registry("corpus")


@dataclass
class SourceStats:
    """Counters a source fills while it is iterated (read them after the iteration ends)."""

    documents: int = 0
    replaced_bytes: int = 0


def iter_documents(corpus: str, split: str = "train", *, stats: SourceStats | None = None,
                   **options) -> Iterator[str]:
    """Documents of ``corpus`` (a ``CORPORA`` name) for ``split``; empty documents are skipped.

    >>> next(iter_documents("builtin", "train"))[:20]  # doctest: +SKIP
    'Abstract Base Classe'
    """
    source = CORPORA.get(corpus)
    check_corpus_options(corpus, options)
    stats = stats if stats is not None else SourceStats()
    # Sources check their split and options when called and return a lazy iterator, so mistakes surface
    # here, before the first document is read.
    return _non_empty(source(split, stats, **options), stats)


def _non_empty(documents: Iterator[str], stats: SourceStats) -> Iterator[str]:
    for doc in documents:
        if doc and not doc.isspace():
            stats.documents += 1
            yield doc


def _option_names(source: Callable) -> list[str]:
    return sorted(list(inspect.signature(source).parameters)[2:])  # after (split, stats)


def check_corpus_options(corpus: str, options: dict) -> None:
    """One line for an option the corpus does not take (before any document is read)."""
    valid = _option_names(CORPORA.get(corpus))
    for key in options:
        if key not in valid:
            raise ConfigError(f"unknown option {key!r} for corpus {corpus!r}; valid: {', '.join(valid) or 'none'}")


def check_corpus(corpus: str, options: dict, splits: tuple[str, ...] = ("train",)) -> None:
    """Everything about a corpus that can be checked before reading it: its name, its options, and the local
    files it names (a hub dataset itself is only reached when read)."""
    check_corpus_options(corpus, options)
    if corpus == "files":
        for split in splits:
            paths = options.get("paths") if split == "train" else options.get("validation_paths")
            if split == "train" or paths is not None:
                expand_paths(paths)
    elif corpus == "hf" and not options.get("path"):
        raise ConfigError("corpus 'hf' needs the option path (a hub name like 'allenai/c4' or a builder like 'json')")
    files = options.get("data_files")
    if corpus in ("c4", "hf") and files is not None:
        listed = [f for v in files.values() for f in ([v] if isinstance(v, str) else v)] if isinstance(files, dict) \
            else ([files] if isinstance(files, str) else list(files))
        for f in map(str, listed):
            if "://" in f:
                continue
            f = os.path.expanduser(f)
            if not (glob.glob(f) if glob.has_magic(f) else os.path.exists(f)):
                raise ConfigError(f"corpus {corpus!r} data_files: no file matches {f!r}")


def check_split(corpus: str, split: str, valid: tuple[str, ...] = ("train", "validation")) -> None:
    if split not in valid:
        raise ConfigError(f"unknown split {split!r} for corpus {corpus!r}; valid: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------------------
# builtin: standard-library docstrings
# --------------------------------------------------------------------------------------------------------

# Pure-Python-or-C modules whose import has no side effects (no windows, no network, no output, no
# deprecation warnings on 3.11+). Sorted; a module missing on some platform is skipped.
BUILTIN_MODULES = tuple(sorted("""
    abc argparse array ast asyncio.events asyncio.futures asyncio.locks asyncio.queues asyncio.streams
    asyncio.tasks base64 bdb binascii bisect builtins bz2 calendar cmath cmd code codecs codeop collections
    collections.abc colorsys compileall concurrent.futures configparser contextlib contextvars copy copyreg
    csv dataclasses datetime decimal difflib dis doctest email.charset email.header email.message
    email.mime.text email.parser email.policy email.utils enum filecmp fileinput fnmatch fractions ftplib
    functools gc getopt gettext glob graphlib gzip hashlib heapq hmac html html.parser http.client
    http.cookiejar http.cookies http.server imaplib importlib importlib.abc importlib.metadata
    importlib.resources inspect io ipaddress itertools json json.decoder json.encoder keyword linecache
    locale logging logging.config logging.handlers lzma mailbox marshal math mimetypes modulefinder
    multiprocessing.connection multiprocessing.pool multiprocessing.queues netrc numbers operator optparse
    os os.path pathlib pdb pickle pickletools pkgutil platform plistlib poplib pprint profile pstats
    py_compile pyclbr pydoc queue quopri random re reprlib rlcompleter runpy sched secrets selectors shelve
    shlex shutil signal site smtplib socket socketserver sqlite3 ssl stat statistics string stringprep
    struct subprocess symtable sys sysconfig tabnanny tarfile tempfile textwrap threading time timeit token
    tokenize tomllib trace traceback tracemalloc types typing unicodedata unittest.case unittest.loader
    unittest.mock unittest.result unittest.runner unittest.suite urllib.error urllib.parse urllib.request
    urllib.robotparser uuid warnings wave weakref webbrowser wsgiref.handlers wsgiref.simple_server
    wsgiref.util xml.dom.minidom xml.etree.ElementTree xml.sax xml.sax.handler xml.sax.saxutils
    xmlrpc.client xmlrpc.server zipapp zipfile zipimport zlib zoneinfo
""".split()))

VALIDATION_PERCENT = 5  # share of records held out, chosen by a stable hash of module.qualname


def _own_doc(obj) -> str | None:
    """The object's own docstring, cleaned (never one inherited from a base class)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return None
    doc = inspect.cleandoc(doc).strip()
    return doc or None


def _is_function(obj) -> bool:
    return inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethoddescriptor(obj)


def _module_records(module) -> Iterator[tuple[str, str, object]]:
    """(qualname, kind, object) for a module, its public classes / functions and their public methods."""
    name = module.__name__
    yield name, "module", module
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != name:
            continue  # private, or imported from elsewhere (documented in its own module)
        if isinstance(obj, type):
            yield attr, "class", obj
            for meth_name, meth in sorted(vars(obj).items()):
                if meth_name.startswith("_"):
                    continue
                if isinstance(meth, (staticmethod, classmethod)):
                    meth = meth.__func__
                if _is_function(meth):
                    yield f"{attr}.{meth_name}", "function", meth
        elif _is_function(obj):
            yield attr, "function", obj


def _is_validation(module: str, qualname: str) -> bool:
    digest = hashlib.sha1(f"{module}:{qualname}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < VALIDATION_PERCENT


def collect_builtin_records() -> list[list]:
    """[text, module, qualname, kind, first_line, is_validation] of this process's stdlib, deduplicated by
    text, in a fixed order. Prefer ``builtin_records``: it runs this in a clean interpreter."""
    records, seen = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in BUILTIN_MODULES:
            try:
                module = importlib.import_module(module_name)
            except Exception:  # noqa: BLE001 - a module absent on this platform/build is skipped
                continue
            for qualname, kind, obj in _module_records(module):
                text = _own_doc(obj)
                if text is None or text in seen:
                    continue
                seen.add(text)
                first = text.splitlines()[0].strip()
                records.append([text, module_name, qualname, kind, first, _is_validation(module_name, qualname)])
    return records


# Run in a fresh ``python -I -S`` so that what this process imported or monkeypatched (torch replaces
# inspect.getfile, for one) cannot change the corpus: the same Python version gives the same records.
_CHILD_CODE = (
    "import json, sys; sys.path.insert(0, {root!r}); "
    "from t5lit.data.sources import collect_builtin_records as c; "
    "sys.stdout.write(json.dumps(c()))"
)


@lru_cache(maxsize=1)
def _all_builtin_records() -> tuple[tuple, ...]:
    root = str(Path(__file__).resolve().parents[2])
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD_CODE.format(root=root)],
                              capture_output=True, check=True, timeout=300)
        records = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as err:
        warnings.warn(f"building the builtin corpus in a clean interpreter failed ({type(err).__name__}); "
                      "building it in this process, whose imports may change its content", stacklevel=2)
        records = collect_builtin_records()
    return tuple(tuple(r) for r in records)


def builtin_records(split: str = "train") -> list[dict]:
    """Docstring records of the builtin corpus: dicts with text, module, qualname, kind, first_line.

    ``kind`` is "module", "class" or "function" (methods are functions with a ``Class.method`` qualname; a
    module's qualname is its own dotted name). The same Python version always gives the same records in the
    same order; about 5% are in "validation", chosen by a stable hash of module and qualname.

    >>> r = builtin_records("train")[0]  # doctest: +SKIP
    >>> r["module"], r["qualname"], r["kind"], r["first_line"]  # doctest: +SKIP
    ('abc', 'abc', 'module', 'Abstract Base Classes (ABCs) according to PEP 3119.')
    """
    check_split("builtin", split)
    want_val = split == "validation"
    keys = ("text", "module", "qualname", "kind", "first_line")
    return [dict(zip(keys, r[:5])) for r in _all_builtin_records() if r[5] == want_val]


@CORPORA.add("builtin")
def _builtin(split: str, stats: SourceStats) -> Iterator[str]:
    check_split("builtin", split)
    return (record["text"] for record in builtin_records(split))


# --------------------------------------------------------------------------------------------------------
# Hugging Face datasets: c4 and any dataset
# --------------------------------------------------------------------------------------------------------

def _rank_and_world() -> tuple[int, int]:
    """This process's DDP rank and world size: torch.distributed when initialised, else RANK/WORLD_SIZE."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_for_this_process(dataset):
    """This process's part of a Hugging Face dataset: split across DDP ranks, then across DataLoader workers.

    Ranks: ``split_dataset_by_node`` keeps whole shards per rank when their number divides evenly (C4 en has
    1024 train shards), else every ``world``-th example. Workers: a streaming ``IterableDataset`` iterated
    in a DataLoader worker already gives each worker its own shards (datasets does it when iterated, and
    splitting it here as well would drop data); a map-style ``Dataset`` is split here, every
    ``num_workers``-th example."""
    import datasets
    from datasets.distributed import split_dataset_by_node
    from torch.utils.data import get_worker_info

    rank, world = _rank_and_world()
    if world > 1:
        dataset = split_dataset_by_node(dataset, rank=rank, world_size=world)
    info = get_worker_info()
    if info is not None and info.num_workers > 1 and isinstance(dataset, datasets.Dataset):
        dataset = dataset.shard(num_shards=info.num_workers, index=info.id, contiguous=False)
    return dataset


def _load_hf(path: str, name: str | None, split: str, data_files, streaming: bool):
    from datasets import load_dataset

    try:
        return load_dataset(path, name, split=split, data_files=data_files, streaming=streaming)
    except (ValueError, FileNotFoundError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load Hugging Face dataset {path!r} (name={name!r}, split={split!r}): "
                          f"{first}") from None


def _hf_texts(dataset, text_field: str, where: str, shard: bool) -> Iterator[str]:
    # Sharded when iterated (not when created), so that a DataLoader worker takes its own part.
    for example in shard_for_this_process(dataset) if shard else dataset:
        if text_field not in example:
            raise ConfigError(f"{where} has no field {text_field!r}; fields: {', '.join(sorted(example))}")
        yield example[text_field]


@CORPORA.add("c4")
def _c4(split: str, stats: SourceStats, name: str = "en", data_files=None, shard: bool = True) -> Iterator[str]:
    """C4 from ``allenai/c4`` (config ``name``: en, en.noblocklist, realnewslike, ...), streamed.

    ``data_files`` reads local C4 shards (``c4-train.*.json.gz``) with datasets' json builder instead of the
    hub; ``shard=False`` reads every shard in this process (the token cache holds the whole corpus)."""
    check_split("c4", split)
    if data_files is not None:  # a dict maps splits to files; a path or list of paths is the train split
        if not isinstance(data_files, dict) and split != "train":
            raise ConfigError(f"c4 data_files given as a list is the train split only; for {split!r} give "
                              "data_files as {'train': [...], 'validation': [...]}")
        dataset = _load_hf("json", None, split, data_files, streaming=True)
    else:
        dataset = _load_hf("allenai/c4", name, split, None, streaming=True)
    return _hf_texts(dataset, "text", f"c4 {split}", shard)


@CORPORA.add("hf")
def _hf(split: str, stats: SourceStats, path: str | None = None, name: str | None = None,
        text_field: str = "text", data_files=None, streaming: bool = True, shard: bool = True) -> Iterator[str]:
    """Any Hugging Face dataset: ``load_dataset(path, name, split=split, data_files=..., streaming=...)``."""
    if not path:
        raise ConfigError("corpus 'hf' needs the option path (a hub name like 'allenai/c4' or a builder like 'json')")
    dataset = _load_hf(path, name, split, data_files, streaming)
    return _hf_texts(dataset, text_field, f"dataset {path!r}", shard)


# --------------------------------------------------------------------------------------------------------
# files: local .txt, .jsonl(.gz), .json.gz, .parquet
# --------------------------------------------------------------------------------------------------------

FILE_FORMATS = (".txt", ".jsonl", ".jsonl.gz", ".json.gz", ".parquet")

# Decoding with errors="t5lit.count_replace" acts like errors="replace" and counts the replaced bytes in a
# per-thread counter.
_replaced = threading.local()


def _count_replace(err: UnicodeDecodeError):
    _replaced.count = getattr(_replaced, "count", 0) + (err.end - err.start)
    return "\ufffd", err.end


codecs.register_error("t5lit.count_replace", _count_replace)


def decode_utf8(data: bytes) -> tuple[str, int]:
    """``(text, replaced_bytes)``: bytes that are not UTF-8 become U+FFFD, as ``errors="replace"``.

    >>> decode_utf8(b"caf\\xe9!")
    ('caf\ufffd!', 1)
    """
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        _replaced.count = 0
        text = data.decode("utf-8", errors="t5lit.count_replace")
        return text, _replaced.count


def _file_format(path: str) -> str:
    for ext in sorted(FILE_FORMATS, key=len, reverse=True):
        if path.endswith(ext):
            return ext
    raise ConfigError(f"unsupported file {path!r}; supported extensions: {', '.join(FILE_FORMATS)}")


def expand_paths(paths) -> list[str]:
    """Files named by ``paths`` (a path, a glob, or a list of them), in the given order, globs sorted."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ConfigError("corpus 'files' needs the option paths (a file, a glob or a list of them)")
    out = []
    for p in map(str, paths):
        p = os.path.expanduser(p)
        if glob.has_magic(p):
            matches = sorted(glob.glob(p))
            if not matches:
                raise ConfigError(f"no files match {p!r}")
            out.extend(matches)
        elif os.path.isdir(p):
            raise ConfigError(f"{p} is a directory; give its files (e.g. '{os.path.join(p, '*.txt')}')")
        elif not os.path.isfile(p):
            raise ConfigError(f"file not found: {p}")
        else:
            out.append(p)
    return [p for p in out if _file_format(p)]  # an unsupported extension fails before any reading


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read corpus file {path}: {err.strerror or err}") from None


def _txt_documents(path: str, stats: SourceStats) -> Iterator[str]:
    """One document per block of text separated by blank lines."""
    text, bad = decode_utf8(_read_bytes(path))
    stats.replaced_bytes += bad
    _warn_replaced(path, bad)
    block: list[str] = []
    for line in text.splitlines():
        if line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _jsonl_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line)`` of a ``.jsonl`` or gzipped file; a damaged gzip stream is a one-line error
    naming the file and the last whole line read."""
    import zlib

    number = 0
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                yield number, raw
    except EOFError:
        raise ConfigError(f"{path}: truncated gzip file: it ends after line {number}, before its end-of-stream "
                          "marker; re-download or re-compress it") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        where = f" after line {number}" if number else ""
        raise ConfigError(f"{path}: not a valid gzip file{where} ({err}); a .gz corpus file must be gzip-compressed "
                          "JSON lines") from None
    except OSError as err:
        raise ConfigError(f"cannot read corpus file {path}: {err.strerror or err}") from None


def _jsonl_documents(path: str, stats: SourceStats, text_field: str) -> Iterator[str]:
    bad_total = 0
    for number, raw in _jsonl_lines(path):
        line, bad = decode_utf8(raw)
        bad_total += bad
        stats.replaced_bytes += bad
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number}: not a JSON line ({err.msg}: column {err.colno}); each line "
                              f"must be one JSON object with a {text_field!r} field") from None
        if not isinstance(record, dict) or text_field not in record:
            fields = ", ".join(sorted(record)) if isinstance(record, dict) else f"a JSON {_json_type(record)}"
            raise ConfigError(f"{path}:{number}: no field {text_field!r} (has: {fields})")
        text = record[text_field]
        if not isinstance(text, str):
            raise ConfigError(f"{path}:{number}: field {text_field!r} must be a string, got a JSON {_json_type(text)}")
        yield text
    _warn_replaced(path, bad_total)


def _parquet_documents(path: str, text_field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"{path}: not a readable Parquet file ({first})") from None
    columns = parquet.schema_arrow.names
    if text_field not in columns:
        raise ConfigError(f"{path}: no column {text_field!r} (has: {', '.join(columns)})")
    kind = parquet.schema_arrow.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise ConfigError(f"{path}: column {text_field!r} must hold strings, has {kind}")
    try:
        for batch in parquet.iter_batches(columns=[text_field], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if text is not None:
                    yield text
    except (pa.ArrowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"{path}: damaged Parquet file ({first})") from None


def _warn_replaced(path: str, count: int) -> None:
    if count:
        warnings.warn(f"{path}: {count} bytes that are not UTF-8 were replaced with U+FFFD", stacklevel=3)


@CORPORA.add("files")
def _files(split: str, stats: SourceStats, paths=None, validation_paths=None,
           text_field: str = "text") -> Iterator[str]:
    """Local files; ``paths`` is the train split, ``validation_paths`` (optional) the validation split."""
    check_split("files", split)
    if split == "validation" and validation_paths is None:
        raise ConfigError("corpus 'files' has no validation split; give the option validation_paths")
    files = expand_paths(paths if split == "train" else validation_paths)  # all checked before reading any
    return _read_files(files, stats, text_field)


def _read_files(files: list[str], stats: SourceStats, text_field: str) -> Iterator[str]:
    for path in files:
        fmt = _file_format(path)
        if fmt == ".txt":
            yield from _txt_documents(path, stats)
        elif fmt == ".parquet":
            yield from _parquet_documents(path, text_field)
        else:
            yield from _jsonl_documents(path, stats, text_field)

