"""What t5lit's processes print: each line once, without the warnings that are known to be harmless here.

``quiet_known_warnings()`` (the ``t5lit`` command and every sweep worker call it first) silences these, each
for the reason given; any other warning prints as usual:

- Lightning's ``isinstance(treespec, LeafSpec)`` deprecation: Lightning's own code on a newer torch;
- Lightning's "Your `IterableDataset` has `__len__` defined" with workers: t5lit's streams give each
  DataLoader worker its own shard (t5lit/data/stream.py), so the length is right;
- Lightning's "`weights_only` was not set" (a warning or an info line, by version): t5lit reads the
  checkpoints it wrote (see t5lit/checkpoint.py);
- Lightning's "💡 Tip: ... litlogger" advertisement, printed by every stage.

``log_to_stream(prefix)`` is a worker's logging: one handler on the root logger with time and worker name.
Lightning adds a console handler of its own to the ``lightning`` logger when imported, and its records then
reach the root handler too: every Lightning line would print twice, so that handler is removed.
"""

from __future__ import annotations

import logging
import re
import warnings

KNOWN_HARMLESS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Your `IterableDataset` has `__len__` defined",
    r".*`weights_only` was not set",
)
_KNOWN_LINES = re.compile(r"💡 Tip:|`weights_only` was not set")
# The loggers those lines come from (a logger's filters see only the records logged on it).
_KNOWN_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                  "lightning.pytorch.trainer.connectors.checkpoint_connector")


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _KNOWN_LINES.match(str(record.msg))


def quiet_known_warnings() -> None:
    """Silence the known-harmless warnings and lines (see the module docstring)."""
    for pattern in KNOWN_HARMLESS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _KNOWN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown())


def log_to_stream(prefix: str, level: int = logging.INFO, lightning: bool = True) -> None:
    """One root handler (``<time> <prefix> <LEVEL> <message>``) for a worker process. With ``lightning`` (the
    runner is t5lit's pipeline, which imports it anyway), Lightning is imported now and its own console handler
    removed, so that no line prints twice (see the module docstring)."""
    logging.basicConfig(level=level, format=f"%(asctime)s {prefix} %(levelname)s %(message)s")
    quiet_known_warnings()
    logging.captureWarnings(True)  # warnings as log lines, with the worker's prefix
    if not lightning:
        return
    try:
        import lightning  # noqa: F401 - imported now so that its handler can go before it prints anything
    except ImportError:  # a runner of one's own without Lightning
        return
    logging.getLogger("lightning").handlers.clear()
