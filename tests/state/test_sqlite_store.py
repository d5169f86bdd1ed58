"""Stories only the SQLite state store tells: a file, its locks, its faults.

What every store does alike is in test_store_contract.py, run on this store too."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tests.state.stores import event
from watchdog.errors import StateError
from watchdog.state import SQLiteStateStore, open_store


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


@pytest.fixture
def store(path: str):
    with SQLiteStateStore(path) as opened:
        yield opened


# --- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [b"garbage", b"\x00\xffnot sqlite" * 500])
def test_a_corrupt_file_is_refused_not_reset(path: str, garbage: bytes) -> None:
    Path(path).write_bytes(garbage)

    with pytest.raises(StateError, match="not a model-watchdog state database") as info:
        SQLiteStateStore(path)
    assert "Move it aside" in str(info.value)
    assert Path(path).read_bytes() == garbage


def test_a_store_locked_by_another_process_says_so(path: str) -> None:
    SQLiteStateStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with SQLiteStateStore(path, busy_timeout=0.1) as store:
            with pytest.raises(StateError, match="locked by another process"):
                store.append(event("fraud", "alert"))
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_new_file_locked_while_opening_says_so(path: str) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("CREATE TABLE half_made (id INTEGER)")
    try:
        with pytest.raises(StateError, match="locked"):
            SQLiteStateStore(path, busy_timeout=0.1)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"

    with pytest.raises(StateError, match=f"directory {missing} does not exist"):
        SQLiteStateStore(str(missing / "state.db"))
    assert not missing.exists()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write to any directory"
)
def test_a_read_only_directory_is_named(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StateError, match="not writable"):
            SQLiteStateStore(str(tmp_path / "state.db"))
    finally:
        tmp_path.chmod(0o755)


def test_a_full_disk_rolls_back_and_says_so(store: SQLiteStateStore) -> None:
    store.append(event("fraud", "alert"))
    # Cap the file at its current size: the next growth fails exactly like a full disk.
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")

    with pytest.raises(StateError, match="disk is full"):
        with store.transaction():
            store.set_meta("first", "written before the disk filled up")
            for n in range(200):
                store.append(event("fraud", "state", note="x" * 1000, n=n))

    assert store.get_meta("first") is None
    assert len(store.history()) == 1
    store.set_meta("after", "small writes still work")  # the store stays usable


def test_a_full_disk_inside_a_nested_block_fails_the_whole_transaction(
    store: SQLiteStateStore,
) -> None:
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")

    with pytest.raises(StateError):
        with store.transaction():
            store.set_meta("outer", "1")
            try:
                with store.transaction():
                    for n in range(200):
                        store.append(event("fraud", "state", note="x" * 1000, n=n))
            except StateError:
                pass  # a careless caller goes on after the inner failure
            store.set_meta("after", "1")

    assert store.get_meta("outer") is None
    assert store.get_meta("after") is None
    assert store.history() == []


# --- one daemon per file ----------------------------------------------------------------


def test_a_second_daemon_on_the_same_file_is_refused_until_the_first_closes(path: str) -> None:
    first, second = SQLiteStateStore(path), SQLiteStateStore(path)
    try:
        first.lock_for_daemon()
        with pytest.raises(StateError, match="in use by another model-watchdog daemon") as info:
            second.lock_for_daemon()
        assert f"pid {os.getpid()}" in str(info.value) and "PostgreSQL" in str(info.value)
        second.set_meta("cli", "reads and writes")  # only daemons take the lock

        first.close()  # the kernel frees the flock with the descriptor
        second.lock_for_daemon()
    finally:
        first.close()
        second.close()


def test_a_deleted_lock_or_state_file_is_noticed(path: str) -> None:
    with SQLiteStateStore(path) as store:
        store.lock_for_daemon()
        assert store.lost() == ""

        os.unlink(store.lock_path)
        assert f"lock file {store.lock_path} was deleted" in store.lost()


# --- open_store -------------------------------------------------------------------------


def test_open_store_accepts_paths_and_sqlite_urls(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "a.db")) as plain:
        assert isinstance(plain, SQLiteStateStore)
    with open_store(f"sqlite:///{tmp_path}/b.db") as url:
        assert url.path == str(tmp_path / "b.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://watchdog:secret@127.0.0.1:1/state", "cannot connect"),
        ("mysql://watchdog:secret@db/state", "unknown state store URL scheme 'mysql'"),
        ("", "empty"),
    ],
)
def test_open_store_refuses_what_it_cannot_open(url: str, message: str) -> None:
    with pytest.raises(StateError, match=message) as info:
        open_store(url)
    assert "secret" not in str(info.value)


def test_the_page_cache_is_capped_explicitly(path: str) -> None:
    """The cache grows with the file (history is kept) up to its cap: the store sets the cap
    (sqlite.CACHE_KIB) instead of relying on how the library was built (bench/README.md, "Soak")."""
    from watchdog.state import sqlite as sqlite_store

    with SQLiteStateStore(path) as store:
        assert store._db.execute("PRAGMA cache_size").fetchone()[0] == -sqlite_store.CACHE_KIB == -2048
