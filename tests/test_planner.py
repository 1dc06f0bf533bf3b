"""Input listing and split sizing."""
import pytest

from smr.planner import InputError, choose_split_size, list_inputs, plan_map_tasks
from smr.storage import open_store
from smr.storage.base import InvalidKey
from smr.storage.local import LocalStore

from helpers import write


def test_files_dirs_and_globs(tmp_path):
    for name in ["a.txt", "b.csv", "sub/c.txt", "sub/deep/d.txt", "_SUCCESS", ".tmp", "sub/_log"]:
        write(tmp_path / "in" / name, b"x\n")
    d = tmp_path / "in"
    keys = lambda objs: sorted(o.key for o in objs)  # noqa: E731
    assert keys(list_inputs([str(d)], open_store)) == ["a.txt", "b.csv", "sub/c.txt", "sub/deep/d.txt"]
    assert keys(list_inputs([str(d / "*.txt")], open_store)) == ["a.txt"]
    assert keys(list_inputs([str(d / "sub" / "*" / "*.txt")], open_store)) == ["deep/d.txt"]
    one = list_inputs([str(d / "b.csv")], open_store)
    assert [(o.key, o.size) for o in one] == [("b.csv", 2)]
    # Named explicitly, even a hidden-looking file is input; duplicates are listed once.
    both = list_inputs([str(d / "a.txt"), str(d / "a.txt"), str(d / "_SUCCESS")], open_store)
    assert keys(both) == ["_SUCCESS", "a.txt"]


def test_missing_inputs_name_the_path(tmp_path):
    with pytest.raises(InputError, match=f"input not found: {tmp_path / 'nope'}"):
        list_inputs([str(tmp_path / "nope")], open_store)
    with pytest.raises(InputError, match="no input matches"):
        list_inputs([str(tmp_path / "*.zzz")], open_store)
    (tmp_path / "empty").mkdir()
    assert list_inputs([str(tmp_path / "empty")], open_store) == []


def test_split_size_fills_whole_waves_within_memory():
    gib = 2**30
    s = choose_split_size(gib, memory_mb=1024, concurrency=2)
    tasks = -(-gib // s)
    assert tasks % 2 == 0 and s <= 1024 * 2**20 * 0.6
    assert choose_split_size(10_000, memory_mb=1024, concurrency=4) == 2500
    small = choose_split_size(gib, memory_mb=128, concurrency=2)
    assert small < s


def test_many_tiny_files_share_tasks(tmp_path):
    for i in range(500):
        write(tmp_path / "in" / f"f{i:04d}.txt", b"tiny\n")
    objs = list_inputs([str(tmp_path / "in")], open_store)
    tasks = plan_map_tasks(objs, choose_split_size(sum(o.size for o in objs), 1024, 2))
    assert len(tasks) == 2
    assert sum(len(t["splits"]) for t in tasks) == 500


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/etc/passwd", "a\x00b", "dir/", ".", "a/./b", ""])
def test_local_store_rejects_keys_that_escape(tmp_path, key):
    store = LocalStore(str(tmp_path / "root"))
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    with pytest.raises(InvalidKey):
        store.get(key)
    assert not (tmp_path / "escape").exists()


def test_local_store_puts_are_atomic_and_listing_hides_temp_files(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put("d/x", b"1")
    write(tmp_path / "d" / ".smr-tmp-abc", b"partial")
    assert [o.key for o in store.list("d/")] == ["d/x"]
    assert [o.key for o in store.list("d/x")] == ["d/x"]
    store.put("d/x1", b"22")
    assert [o.key for o in store.list("d/x")] == ["d/x", "d/x1"]
