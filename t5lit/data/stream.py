"""Deterministic, resumable batch streams of the fine-tuning data module (pre-training reads its corpus as lanes,
t5lit/data/lanes.py, whose batches carry their own positions; ``to_tensors`` serves both).

A stream is an IterableDataset of whole batches: batch ``b`` of epoch ``e`` on rank ``r`` is a pure
function ``make_batch(e, b * world + r)`` of the data module's settings, so the order never depends on
the number of DataLoader workers, and resuming is skipping: a run resumed from a mid-epoch checkpoint
starts at the first batch the interrupted run had not consumed, and sees exactly the batches the
uninterrupted run would have seen.

DataLoader workers split the batches round robin (worker ``w`` of ``W`` makes batches ``w, w+W, ...``
after the start), which is the order in which PyTorch's DataLoader collects them. The position (epoch,
start, rank, world) lives in a shared-memory tensor, so persistent workers, which keep their copy of the
stream across epochs, read the position the loader set for each new iteration.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


def to_tensors(batch: dict) -> dict:
    """NumPy arrays to tensors (int32 ids to int64 for embedding and loss; floats stay float32)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(value))
            out[key] = t.long() if t.dtype in (torch.int32, torch.int16, torch.uint16) else t
        else:
            out[key] = value
    return out


class BatchStream(IterableDataset):
    """Yields ``make_batch(epoch, global_batch_index)`` for this rank, from ``start`` on.

    ``num_batches(epoch)`` is the number of global batches in an epoch (divisible by the world size is
    not required: the last incomplete round is dropped so every rank takes the same number of steps).
    """

    def __init__(self, make_batch: Callable[[int, int], dict], num_batches: Callable[[int], int]):
        self.make_batch = make_batch
        self.num_batches = num_batches
        # epoch, first local batch index of the epoch to produce, rank, world
        self._position = torch.tensor([0, 0, 0, 1], dtype=torch.long).share_memory_()

    @property
    def position(self) -> tuple[int, int, int, int]:
        epoch, start, rank, world = self._position.tolist()
        return epoch, start, rank, world

    @position.setter
    def position(self, value: tuple[int, int, int, int]) -> None:
        self._position.copy_(torch.tensor(value, dtype=torch.long))

    def local_batches(self) -> int:
        epoch, _, _, world = self.position
        return self.num_batches(epoch) // world

    def __len__(self) -> int:
        return max(self.local_batches() - self.position[1], 0)

    def __iter__(self):
        # The position is read now, not at the first next(): a later len() must not move it.
        epoch, start, rank, world = self.position
        return self._batches(epoch, start, rank, world, self.local_batches())

    def _batches(self, epoch: int, start: int, rank: int, world: int, stop: int):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for local in range(start + worker, stop, workers):
            yield to_tensors(self.make_batch(epoch, local * world + rank))


class StreamLoader(DataLoader):
    """A DataLoader over a BatchStream that asks its data module where to start each time it is iterated
    (the epoch and the resume position live in the trainer and the checkpoint, not in the workers)."""

    def __init__(self, stream: BatchStream, position: Callable[[bool], tuple[int, int, int, int]], **kwargs):
        super().__init__(stream, batch_size=None, **kwargs)
        self._position = position

    def __iter__(self):
        stream: BatchStream = self.dataset  # type: ignore[assignment]
        stream.position = self._position(True)  # before the (persistent) workers start this iteration
        return super().__iter__()

    def __len__(self) -> int:
        stream: BatchStream = self.dataset  # type: ignore[assignment]
        epoch, start, _, world = self._position(False)
        return max(stream.num_batches(epoch) // world - start, 0)


class ResumableMixin:
    """State of a data module's training stream: where to restart, saved in Lightning checkpoints.

    ``state_dict`` records the epoch and the batches already processed in it (Lightning calls it while
    saving a checkpoint, after the batch was processed); ``load_state_dict`` arms the next epoch start."""

    _resume: tuple[int, int] | None = None

    def _trainer_position(self, consume: bool) -> tuple[int, int, int, int]:
        """(epoch, first local batch, rank, world); ``consume`` uses up an armed resume position."""
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if self._resume is not None:
            epoch, start = self._resume
            if consume:
                self._resume = None
            return epoch, start, rank, world
        epoch = trainer.current_epoch if trainer is not None else 0
        return epoch, 0, rank, world

    def state_dict(self) -> dict:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": trainer.current_epoch, "batches_done": int(done), "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        from t5lit.registry import ConfigError

        if state.get("fingerprint") not in (None, self.fingerprint()):
            raise ConfigError("checkpoint's data settings differ from this data module's (corpus, objective, "
                              "seed, lengths or batch size changed); resume with the same data config")
        self._resume = (int(state["epoch"]), int(state["batches_done"]))

    def fingerprint(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError
