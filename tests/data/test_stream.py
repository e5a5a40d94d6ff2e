import numpy as np
import pytest

from t5lit.data.stream import BatchStream, StreamLoader


def make_batch(epoch, index):
    return {"x": np.array([[epoch, index]], dtype=np.int32)}


def collect(position, workers):
    stream = BatchStream(make_batch, lambda epoch: 10)
    loader = StreamLoader(stream, position, num_workers=workers)
    return [tuple(b["x"][0].tolist()) for b in loader], len(loader)


@pytest.mark.parametrize("workers", [0, 2])
def test_order_is_independent_of_workers_and_resume_skips(workers):
    full, n = collect(lambda consume: (3, 0, 0, 1), workers)
    assert full == [(3, i) for i in range(10)] and n == 10
    resumed, n = collect(lambda consume: (3, 4, 0, 1), workers)
    assert resumed == full[4:] and n == 6


def test_ranks_split_the_global_batches():
    rank0, _ = collect(lambda consume: (0, 0, 0, 2), 0)
    rank1, _ = collect(lambda consume: (0, 0, 1, 2), 0)
    assert [i for _, i in rank0] == [0, 2, 4, 6, 8] and [i for _, i in rank1] == [1, 3, 5, 7, 9]


def test_persistent_workers_follow_the_position_of_each_iteration():
    """Persistent workers keep their copy of the stream across epochs; the shared position reaches them."""
    positions = iter([(3, 0, 0, 1), (4, 0, 0, 1), (5, 7, 0, 1)])
    stream = BatchStream(make_batch, lambda epoch: 10)
    loader = StreamLoader(stream, lambda consume: next(positions) if consume else (5, 7, 0, 1), num_workers=2,
                          persistent_workers=True)
    epochs = [[tuple(b["x"][0].tolist()) for b in loader] for _ in range(3)]
    assert epochs[0] == [(3, i) for i in range(10)]
    assert epochs[1] == [(4, i) for i in range(10)]
    assert epochs[2] == [(5, 7), (5, 8), (5, 9)]
    assert loader._iterator is not None  # the same workers served every epoch
