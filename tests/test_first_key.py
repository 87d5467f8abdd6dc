"""The first start's key on a real Redis: made once, saved for the owner only, reused, registered
again when Redis lost it, and never a failed start because of what lies in the var directory."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from app.first_key import ensure_first_key, key_file, read_key_file
from app.store import Store, connect
from app.tenancy import DEFAULT_TENANT


def test_given_no_key_when_the_first_start_runs_then_one_key_is_made_saved_0600_and_printed_once(
        store, tmp_path, capsys):
    ensure_first_key(store, var_dir=tmp_path / "var")
    ensure_first_key(store, var_dir=tmp_path / "var")

    path = key_file(tmp_path / "var")
    key = read_key_file(path)
    assert key is not None and path.stat().st_mode & 0o777 == 0o600
    assert store.api_keys.count() == 1 and store.api_keys.authenticate(key).tenant == DEFAULT_TENANT
    assert capsys.readouterr().out.count(key) == 1
    assert [p.name for p in path.parent.iterdir()] == ["api-key"]  # no temporary file left behind


def test_given_redis_emptied_under_a_key_file_when_started_then_the_files_key_is_registered_again_silently(
        store, tmp_path, capsys):
    ensure_first_key(store, var_dir=tmp_path)
    key = read_key_file(key_file(tmp_path))
    capsys.readouterr()
    store.client.flushall()

    ensure_first_key(store, var_dir=tmp_path)

    assert store.api_keys.count() == 1 and store.api_keys.authenticate(key) is not None
    assert read_key_file(key_file(tmp_path)) == key and key not in capsys.readouterr().out


@pytest.mark.parametrize("leftover", ["file", "directory"])
def test_given_a_temporary_file_left_by_a_crash_when_the_first_start_runs_then_the_key_is_saved_anyway(
        store, tmp_path, leftover):
    temporary = tmp_path / "api-key.tmp"
    if leftover == "file":
        temporary.write_text("half a key")
    else:
        temporary.mkdir()

    ensure_first_key(store, var_dir=tmp_path)

    key = read_key_file(key_file(tmp_path))
    assert key is not None and store.api_keys.authenticate(key) is not None


def test_given_the_key_path_is_a_directory_when_the_first_start_runs_then_it_starts_shows_the_key_and_says_why(
        store, tmp_path, capsys, caplog):
    key_file(tmp_path).mkdir()

    with caplog.at_level(logging.WARNING, logger="app.first_key"):
        ensure_first_key(store, var_dir=tmp_path)

    # the key could not be saved, so the one chance to see it is now: shown, and usable
    shown = capsys.readouterr().out.strip().splitlines()[-1]
    assert shown.startswith("bl_") and store.api_keys.authenticate(shown) is not None
    warnings = [record.getMessage() for record in caplog.records if record.name == "app.first_key"]
    assert len(warnings) == 1 and "could not be saved" in warnings[0] and shown not in warnings[0]
    assert not any(record.exc_info for record in caplog.records)


def test_given_eight_processes_starting_at_the_same_instant_when_each_ensures_a_key_then_exactly_one_is_made(
        redis_url, tmp_path, capsys):
    stores = [Store(client=connect(redis_url)) for _ in range(8)]
    for each in stores:
        each.ping()  # connected already, so that they all reach Redis within the same instant
    for attempt in range(5):  # a race lost only now and then must still show
        var = tmp_path / str(attempt)
        stores[0].client.flushall()
        _race(stores, var)

        key = read_key_file(key_file(var))
        assert stores[0].api_keys.count() == 1 and stores[0].api_keys.authenticate(key) is not None, attempt
        assert capsys.readouterr().out.count("bl_") == 1


def _race(stores: list[Store], var: Path) -> None:
    start = threading.Barrier(len(stores))

    def first_start(store: Store) -> None:
        start.wait()
        ensure_first_key(store, var_dir=var)

    threads = [threading.Thread(target=first_start, args=(each,)) for each in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
