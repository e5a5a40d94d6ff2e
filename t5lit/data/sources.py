"""Text sources: corpora that yield documents (plain strings), by registry name.

``iter_documents(corpus, split, **options)`` is the one entry point for reading a corpus whole (vocabulary
training, the token cache); ``corpus_plan(corpus, split, options)`` gives the same documents as independently
readable shards (``read_shard``), which pre-training streams from its DataLoader workers (t5lit/data/lanes.py).
``t5lit list corpora`` shows the names.

- ``builtin``: an offline English corpus made at run time from the docstrings of a fixed list of standard
  library modules (their modules, classes, functions and methods). It exists on every Python install, so
  tests, examples and smoke runs need no download. ``builtin_records(split)`` gives the same documents with
  their provenance (module, qualname, kind) for the built-in downstream tasks.
- ``c4``: C4 (paper Section 2.2) from the Hugging Face hub, streamed, sharded across DDP ranks and DataLoader
  workers.
- ``hf``: any Hugging Face dataset with a text field.
- ``files``: local ``.txt`` (blank-line separated documents), ``.jsonl`` / ``.jsonl.gz`` / ``.json.gz``
  (C4's own shard format, field ``text``) and ``.parquet`` (column ``text``).
- the pre-training data sets of the paper's Table 8 and corpus mixtures: t5lit/data/corpora.py.

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


def _discover_corpora() -> None:
    importlib.import_module("t5lit.data.corpora")  # the paper's Table 8 data sets and corpus mixtures


# In the order they were added: the general sources first, then the paper's data sets (t5lit/data/corpora.py).
CORPORA: Registry[Callable[..., Iterator[str]]] = Registry("corpus", discover=_discover_corpora, sort=False)


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


def check_corpus(corpus: str, options: dict, splits: tuple[str, ...] = ("train",), probe: bool = False) -> None:
    """Everything about a corpus that can be checked before reading it: its name, its options, and the local
    files it names (of each component of a mixture). With ``probe``, also read its first document: a hub
    dataset that cannot be reached, or a corpus that yields no documents, fails here in one line."""
    for component in corpus_components(corpus, options):
        _check_one_corpus(component.corpus, component.options, splits)
    if probe:
        first_document(corpus, options)


def _check_one_corpus(corpus: str, options: dict, splits: tuple[str, ...]) -> None:
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
    data_dir = options.get("data_dir")
    if data_dir is not None and not Path(os.path.expanduser(str(data_dir))).is_dir():
        raise ConfigError(f"corpus {corpus!r} data_dir: {data_dir} is not a directory")


def check_split(corpus: str, split: str, valid: tuple[str, ...] = ("train", "validation")) -> None:
    if split not in valid:
        raise ConfigError(f"unknown split {split!r} for corpus {corpus!r}; valid: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------------------
# Shards: a split as independently readable parts (pre-training streams them from its DataLoader workers)
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShardRef:
    """One independently readable part of a corpus split: a local file, one data file of a Hugging Face
    dataset, or the builtin corpus. ``read_shard(ref)`` gives its documents in order; plain data, so it goes
    to DataLoader workers (each reopens what it reads) and its ``key`` names it in messages."""

    kind: str  # "builtin" | "file" | "hf"
    split: str
    key: str  # the file's name, "builtin", or the hub shard's label
    index: int = 0  # hf: this shard of ``count``
    count: int = 1
    source: tuple = ()  # hf: load_dataset's (path, name, data_files, revision)
    text_field: str = "text"
    join: int = 1  # hf: records per document


@dataclass(frozen=True)
class CorpusComponent:
    """One corpus of a plan and its mixing rate; a plain corpus is a plan of one component of rate 1."""

    label: str
    corpus: str
    options: dict
    rate: float
    has_validation: bool  # the corpus has its own validation split (else pre-training holds some out)


@dataclass(frozen=True)
class Mixture:
    """What a mixture corpus returns for its options: ``(label, corpus, options, rate)`` per component."""

    components: tuple


# name -> fn(split, **options) -> [ShardRef]; name -> fn(**options) -> bool; name -> fn(**options) -> Mixture
_SHARDS: dict[str, Callable[..., list[ShardRef]]] = {}
_VALIDATION: dict[str, Callable[..., bool]] = {}
_MIXTURES: dict[str, Callable[..., Mixture]] = {}


def sharded(name: str, shards: Callable[..., list[ShardRef]], has_validation: Callable[..., bool]) -> None:
    """Declare how corpus ``name`` (already in ``CORPORA``) splits into shards and whether it has a validation
    split: ``shards(split, **options)``, ``has_validation(**options)``."""
    _SHARDS[name], _VALIDATION[name] = shards, has_validation


def mixture(name: str, components: Callable[..., Mixture]) -> None:
    """Declare corpus ``name`` (already in ``CORPORA``) a mixture: ``components(**options) -> Mixture``."""
    _MIXTURES[name] = components


def corpus_components(corpus: str, options: dict | None = None) -> list[CorpusComponent]:
    """The corpora a corpus reads, each with its rate (normalised to sum to 1) and options, checked."""
    CORPORA.get(corpus)
    options = dict(options or {})
    check_corpus_options(corpus, options)
    if corpus in _MIXTURES:
        parts = list(_MIXTURES[corpus](**options).components)
    else:
        parts = [(corpus, corpus, options, 1.0)]
    total = sum(float(rate) for *_, rate in parts)
    out = []
    for label, name, opts, rate in parts:
        if name in _MIXTURES:
            raise ConfigError(f"corpus {corpus!r}: component {label!r} is itself a mixture ({name}); list its "
                              "corpora instead")
        CORPORA.get(name)
        check_corpus_options(name, opts)
        if name not in _SHARDS:
            raise ConfigError(f"corpus {name!r} cannot be streamed in shards (it has no shard plan)")
        out.append(CorpusComponent(label, name, dict(opts), float(rate) / total, bool(_VALIDATION[name](**opts))))
    return out


def corpus_shards(component: CorpusComponent, split: str) -> list[ShardRef]:
    """The shards of one component's ``split`` (in the corpus's own order: files sorted, hub shards numbered)."""
    shards = _SHARDS[component.corpus](split, **component.options)
    if not shards:
        raise ConfigError(f"corpus {component.label!r} has no {split} files")
    return shards


def read_shard(ref: ShardRef) -> Iterator[str]:
    """The non-empty documents of a shard, in order (the same documents ``iter_documents`` gives for it)."""
    if ref.kind == "builtin":
        docs: Iterator[str] = (r["text"] for r in builtin_records(ref.split))
    elif ref.kind == "file":
        docs = _read_files([ref.key], SourceStats(), ref.text_field)
    elif ref.kind == "hf":
        docs = _hf_shard_documents(ref)
    else:
        raise ConfigError(f"unknown shard kind {ref.kind!r}")
    return _non_empty(docs, SourceStats())


_HF_DATASETS: dict[str, object] = {}  # per process: load_dataset's streaming dataset of each source and split


def _hf_shard_documents(ref: ShardRef) -> Iterator[str]:
    path, name, files, revision = ref.source
    key = repr((ref.source, ref.split))
    if key not in _HF_DATASETS:
        data_files = {ref.split: list(files)} if isinstance(files, tuple) else files
        _HF_DATASETS[key] = _load_hf(path, name, ref.split, data_files, True, revision)
    dataset = _HF_DATASETS[key]
    part = dataset.shard(num_shards=ref.count, index=ref.index) if ref.count > 1 else dataset
    texts = _hf_batched_texts(part, ref.text_field, f"{path} {ref.split} ({ref.key})")
    return _joined(texts, ref.join) if ref.join > 1 else texts


def _hf_batched_texts(dataset, text_field: str, where: str) -> Iterator[str]:
    """The text field of every record, read in batches with ``IterableDataset.iter``: unlike iterating the
    dataset itself, it does not split the data again between DataLoader workers (each lane reads its own shard)."""
    for batch in dataset.iter(batch_size=256):
        if text_field not in batch:
            raise ConfigError(f"{where} has no field {text_field!r}; fields: {', '.join(sorted(batch))}")
        yield from batch[text_field]


def first_document(corpus: str, options: dict | None = None, split: str = "train") -> str:
    """The first document of a corpus (of each component of a mixture: the first one found), reading as
    little as possible; a corpus that yields no document is a one-line error naming what it read."""
    found = None
    for component in corpus_components(corpus, options):
        shards = corpus_shards(component, split)
        doc = next((d for ref in shards for d in read_shard(ref)), None)
        if doc is None:
            names = ", ".join(ref.key for ref in shards[:3]) + (f" (+{len(shards) - 3} more)" if len(shards) > 3
                                                                   else "")
            raise ConfigError(f"corpus {component.label!r} yields no documents in its {split} split (read: "
                              f"{names}); every record was empty or blank")
        found = found or doc
    return found


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


DATASETS_DIR_ENV = "T5LIT_DATASETS_DIR"  # a folder of local copies of hub datasets: <dir>/<owner>/<name>/...


def _load_hf(path: str, name: str | None, split: str, data_files, streaming: bool, revision: str | None = None):
    from datasets import load_dataset

    extra = {} if revision is None else {"revision": revision}
    try:
        return load_dataset(path, name, split=split, data_files=data_files, streaming=streaming, **extra)
    except (ConnectionError, TimeoutError) as err:
        raise ConfigError(_offline_message(path, name, err)) from None
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "reach" in first or "offline" in first.lower() or "connect" in first.lower():
            raise ConfigError(_offline_message(path, name, err)) from None
        raise ConfigError(f"cannot load Hugging Face dataset {path!r} (name={name!r}, split={split!r}): "
                          f"{first}") from None


def _offline_message(path: str, name: str | None, err: BaseException) -> str:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    config = f" (config {name!r})" if name else ""
    return (f"cannot reach the Hugging Face hub for dataset {path!r}{config}: {reason}; offline, give the corpus "
            f"option data_dir, a local copy of its files (huggingface-cli download {path} --repo-type dataset "
            f"--local-dir DIR), or put one at ${DATASETS_DIR_ENV}/{path}")


def _hf_texts(dataset, text_field: str, where: str, shard: bool) -> Iterator[str]:
    # Sharded when iterated (not when created), so that a DataLoader worker takes its own part.
    for example in shard_for_this_process(dataset) if shard else dataset:
        if text_field not in example:
            raise ConfigError(f"{where} has no field {text_field!r}; fields: {', '.join(sorted(example))}")
        yield example[text_field]


@dataclass(frozen=True)
class HubDataset:
    """A Hugging Face hub dataset a corpus streams, and where a local copy keeps its files.

    ``layout`` maps a split to glob patterns relative to the copy's root (``{name}`` is the config), the hub's own
    layout: ``huggingface-cli download <path> --repo-type dataset --local-dir DIR`` makes such a copy, read with
    datasets' ``builder`` ("json" or "parquet"), offline, through the same streaming code as the hub.
    ``join`` > 1 makes one document of that many consecutive records (BookCorpus has one sentence per record).
    """

    path: str
    name: str | None
    layout: dict
    builder: str
    text_field: str = "text"
    revision: str | None = None
    join: int = 1

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.layout)

    def local_root(self, data_dir) -> Path | None:
        """The local copy to read: ``data_dir`` (the copy itself, or a folder of copies named by hub id,
        ``<data_dir>/allenai/c4``), else ``$T5LIT_DATASETS_DIR/<path>`` when it exists; None: the hub."""
        if data_dir is not None:
            root = Path(os.path.expanduser(str(data_dir)))
            if not root.is_dir():
                raise ConfigError(f"data_dir {root} is not a directory (a local copy of the Hugging Face dataset "
                                  f"{self.path!r} in its own layout, or a folder of copies such as "
                                  f"{root / self.path})")
            return root / self.path if (root / self.path).is_dir() else root
        env = os.environ.get(DATASETS_DIR_ENV)
        if env and (Path(env) / self.path).is_dir():
            return Path(env) / self.path
        return None

    def local_files(self, root: Path, split: str, name: str | None) -> list[str]:
        """The split's files under a local copy, sorted; none is a one-line error naming the patterns."""
        patterns = [pat.format(name=name) for pat in self.layout.get(split, ())]
        files = sorted({str(f) for pat in patterns for f in root.glob(pat) if f.is_file()})
        if not files:
            shown = " or ".join(str(root / pat) for pat in patterns) or f"{root} (no {split} split)"
            raise ConfigError(f"no {split} files of {self.path!r} found: {shown} (a local copy keeps the hub's "
                              "layout)")
        return files

    def source(self, split: str, name: str | None = None, data_dir=None, data_files=None) -> tuple:
        """``(path, name, data_files, revision)`` for ``load_dataset``: the hub, or datasets' ``builder`` over
        local files (``data_files``, or the files of the local copy at ``data_dir``)."""
        name = self.name if name is None else name
        if data_files is None:
            root = self.local_root(data_dir)
            if root is not None:
                data_files = {split: self.local_files(root, split, name)}
        if data_files is None:
            return (self.path, name, None, self.revision)
        return (self.builder, None, _split_files(data_files, split, self.path), None)


def _split_files(data_files, split: str, what: str) -> tuple:
    """The files of ``split`` from a data_files option: a dict of splits, or a path, glob or list (train only)."""
    if isinstance(data_files, dict):
        if split not in data_files:
            raise ConfigError(f"{what} data_files has no {split!r} split; give data_files as "
                              "{'train': [...], 'validation': [...]}")
        data_files = data_files[split]
    elif split != "train":
        raise ConfigError(f"{what} data_files given as a list is the train split only; for {split!r} give "
                          "data_files as {'train': [...], 'validation': [...]}")
    listed = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    out = []
    for f in map(str, listed):
        f = os.path.expanduser(f)
        out.extend(sorted(glob.glob(f)) if glob.has_magic(f) else [f])
    return tuple(out)


def hub_documents(dataset: HubDataset, split: str, *, name: str | None = None, data_dir=None, data_files=None,
                  shard: bool = True) -> Iterator[str]:
    """The documents of a hub dataset's split, streamed (sharded across ranks and workers unless ``shard`` is
    False), from the hub or from local files in its layout."""
    path, config, files, revision = dataset.source(split, name, data_dir, data_files)
    if files is not None and split not in dataset.splits and not isinstance(data_files, dict):
        check_split(dataset.path, split, dataset.splits)
    loaded = _load_hf(path, config, split, None if files is None else {split: list(files)}, True, revision)
    texts = _hf_texts(loaded, dataset.text_field, f"{dataset.path} {split}", shard)
    return _joined(texts, dataset.join) if dataset.join > 1 else texts


def _joined(texts: Iterator[str], join: int) -> Iterator[str]:
    """One document per ``join`` consecutive records, joined with spaces (empty records skipped)."""
    group: list[str] = []
    for text in texts:
        if text and not text.isspace():
            group.append(text.strip())
        if len(group) == join:
            yield " ".join(group)
            group = []
    if group:
        yield " ".join(group)


def hub_shards(dataset: HubDataset, split: str, *, name: str | None = None, data_dir=None,
               data_files=None) -> list[ShardRef]:
    """The split's shards: one per data file (local files need no network; the hub's are listed by datasets)."""
    source = dataset.source(split, name, data_dir, data_files)
    path, config, files, revision = source
    if files is not None:
        count, labels = len(files), [os.path.basename(f) for f in files]
    else:
        count = int(_load_hf(path, config, split, None, True, revision).n_shards)
        labels = [f"{path} {split} shard {i} of {count}" for i in range(count)]
    return [ShardRef("hf", split, labels[i], i, count, source, dataset.text_field, dataset.join)
            for i in range(count)]


C4 = HubDataset("allenai/c4", "en", {"train": ("{name}/c4-train.*.json.gz",),
                                     "validation": ("{name}/c4-validation.*.json.gz",)}, "json")


@CORPORA.add("c4")
def _c4(split: str, stats: SourceStats, name: str = "en", data_files=None, shard: bool = True,
        data_dir=None) -> Iterator[str]:
    """C4 from ``allenai/c4`` (config ``name``: en, en.noblocklist, realnewslike, ...), streamed.

    ``data_files`` reads local C4 shards (``c4-train.*.json.gz``) with datasets' json builder instead of the
    hub, as does ``data_dir``, a local copy of the dataset in its own layout (``<data_dir>/en/c4-train.*``);
    ``shard=False`` reads every shard in this process (the token cache holds the whole corpus)."""
    check_split("c4", split)
    if data_files is not None:  # a dict maps splits to files; a path or list of paths is the train split
        if not isinstance(data_files, dict) and split != "train":
            raise ConfigError(f"c4 data_files given as a list is the train split only; for {split!r} give "
                              "data_files as {'train': [...], 'validation': [...]}")
        dataset = _load_hf("json", None, split, data_files, streaming=True)
        return _hf_texts(dataset, "text", f"c4 {split}", shard)
    return hub_documents(C4, split, name=name, data_dir=data_dir, shard=shard)


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



# --------------------------------------------------------------------------------------------------------
# The shards of the general corpora
# --------------------------------------------------------------------------------------------------------

def _builtin_shards(split: str) -> list[ShardRef]:
    check_split("builtin", split)
    return [ShardRef("builtin", split, "builtin")]


def _files_shards(split: str, paths=None, validation_paths=None, text_field: str = "text") -> list[ShardRef]:
    check_split("files", split)
    if split == "validation" and validation_paths is None:
        raise ConfigError("corpus 'files' has no validation split; give the option validation_paths")
    files = expand_paths(paths if split == "train" else validation_paths)
    return [ShardRef("file", split, path, text_field=text_field) for path in files]


def _c4_shards(split: str, name: str = "en", data_files=None, shard: bool = True, data_dir=None) -> list[ShardRef]:
    check_split("c4", split)
    return hub_shards(C4, split, name=name, data_dir=data_dir, data_files=data_files)


def _hf_shards(split: str, path: str | None = None, name: str | None = None, text_field: str = "text",
               data_files=None, streaming: bool = True, shard: bool = True) -> list[ShardRef]:
    if not path:
        raise ConfigError("corpus 'hf' needs the option path (a hub name like 'allenai/c4' or a builder like 'json')")
    count = int(getattr(_load_hf(path, name, split, data_files, True), "n_shards", 1) or 1)
    source = (path, name, data_files, None)
    return [ShardRef("hf", split, f"{path} {split} shard {i} of {count}", i, count, source, text_field)
            for i in range(count)]


CORPORA.add("hf", _hf)  # after files: `t5lit list corpora` shows builtin, c4, files, hf, then the paper's data sets
sharded("builtin", _builtin_shards, lambda: True)
sharded("files", _files_shards, lambda paths=None, validation_paths=None, text_field="text": validation_paths
        is not None)
sharded("c4", _c4_shards, lambda **_: True)
sharded("hf", _hf_shards, lambda data_files=None, **_: isinstance(data_files, dict) and "validation" in data_files)
