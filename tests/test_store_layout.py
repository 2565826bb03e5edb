"""Shard tables of the parameter store's layouts (pure Python, no MPI)."""
import pytest

from mpitrain.comm.layout import LAYOUTS, shard_all, shard_server


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("size", [1, 2, 3, 4, 64, 100])
@pytest.mark.parametrize("d", [1, 7, 300, 1001])
def test_shards_cover_range_contiguously(name, size, d):
    split, _ = LAYOUTS[name]
    shards = [s for s in split(size, d, 0) if s.count > 0]
    start = 0
    for s in shards:
        assert s.start == start and 0 <= s.rank < size
        start += s.count
    assert start == d


def test_sharded_balances_within_one():
    counts = [s.count for s in shard_all(64, 1000, 0)]
    assert max(counts) - min(counts) <= 1 and len(counts) == 64


def test_server_puts_everything_on_root():
    assert shard_server(8, 10, 3) == ((3, 0, 10),)
    assert LAYOUTS["server"][1] is False and LAYOUTS["sharded"][1] is True
