"""One instance process per data directory (engine/storage/dir_lock.py): a start that meets an
agent's moment-long check waits for it; a directory held for longer is another instance's."""

import os
import threading
import time

import pytest

from engine.storage import dir_lock


def held_for(data_dir, seconds: float) -> threading.Event:
    """Hold data_dir as an agent's check does, for `seconds`, on a thread; set once held."""
    taken = threading.Event()

    def check():
        with dir_lock.while_down(data_dir) as down:
            assert down
            taken.set()
            time.sleep(seconds)

    threading.Thread(target=check, daemon=True).start()
    assert taken.wait(5)
    return taken


def test_an_instance_started_during_its_agents_check_waits_for_it_and_starts(tmp_path):
    held_for(tmp_path, 0.5)
    started = time.monotonic()
    fd = dir_lock.hold(tmp_path)
    try:
        assert time.monotonic() - started >= 0.3
        with dir_lock.while_down(tmp_path) as down:
            assert not down  # this process has it now
    finally:
        os.close(fd)


def test_a_directory_held_past_the_grace_is_another_instances(tmp_path):
    held_for(tmp_path, 5)
    with pytest.raises(dir_lock.AlreadyRunning, match="still held after 0.3 s"):
        dir_lock.hold(tmp_path, grace_s=0.3)
