"""kill -9 of a process committing to the journal: every acknowledged record survives."""

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from engine.storage.journal import FILE_HEADER_SIZE, Journal, JournalReader, replay_into
from engine.storage.journal_codec import scan_good_prefix
from engine.storage.store import Store

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from engine.storage.journal import Entry, Journal
    from engine.storage.store import Store

    journal = Journal(sys.argv[1], "MIR", max_file_bytes=256 * 1024)
    store = Store.open(sys.argv[2])

    async def committer(c):
        i = 0
        while True:
            recs = await journal.commit(
                [Entry(i, "DB1", "SET", "load", (c, i), "v" * 100),
                 Entry(i, "DB1", "SET", "load", (c, i, "twin"), i)]
            )
            store.apply(recs)  # like the primary: journal first, then the database
            sys.stdout.write(f"{c} {i}\\n")
            sys.stdout.flush()
            i += 1

    async def main():
        await asyncio.gather(*[committer(c) for c in range(8)])

    asyncio.run(main())
    """
)


def _read_acks(proc, want, deadline):
    """Read acknowledged (committer, i) lines until `want` of them or the deadline."""
    acks, buf = [], b""
    fd = proc.stdout.fileno()
    while len(acks) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        acks += [tuple(map(int, ln.split())) for ln in lines]
    return acks, buf


@pytest.mark.timeout(60)
def test_acknowledged_commits_survive_kill_9_and_the_tail_is_cut_clean(tmp_path):
    jdir, dbdir = str(tmp_path / "journal"), str(tmp_path / "db")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, jdir, dbdir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        acks, rest = _read_acks(proc, 3000, time.monotonic() + 40)
        assert len(acks) >= 3000, proc.stderr.read1().decode() if proc.poll() is not None else ""
        proc.send_signal(signal.SIGKILL)  # mid-load: committers are still running
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        tail = rest + proc.stdout.read()  # acks already in the pipe count too
        acks += [tuple(map(int, ln.split())) for ln in tail.split(b"\n") if ln.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    # SIGKILL can cut a multi-page pwrite short; a power cut can also leave part of a record.
    # Add such a partial record by hand so the cut is always exercised, then reopen.
    files_before = JournalReader(jdir, "MIR").files()
    first_file = os.path.join(jdir, files_before[0][1])
    with open(first_file, "rb") as f:
        partial = f.read()[FILE_HEADER_SIZE : FILE_HEADER_SIZE + 70]  # a record's first 70 bytes
    with open(os.path.join(jdir, files_before[-1][1]), "ab") as f:
        f.write(partial)

    journal = Journal(jdir, "MIR", max_file_bytes=256 * 1024)
    try:
        assert journal.recovered_cut_bytes >= len(partial)
        assert len(journal.files()) > 1  # the load crossed a file rotation
        assert journal.current_file == journal.files()[-1]
        # after recovery every file is exactly header + whole valid records
        for name in journal.files():
            with open(os.path.join(jdir, name), "rb") as f:
                body = f.read()[FILE_HEADER_SIZE:]
            assert scan_good_prefix(body) == len(body), name
        assert journal.end_position.offset == FILE_HEADER_SIZE + len(body)
        on_disk = {r.subs for r in JournalReader(jdir, "MIR").records_from()}
        missing = [a for a in acks if a not in on_disk or (*a, "twin") not in on_disk]
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:3]}"
        # the journal keeps working after recovery
        end = journal.end_position
        [rec] = journal.commit_sync([(0, "DB1", "SET", "load", ("after",), 1)])
        assert rec.position == end
    finally:
        journal.close()

    store = Store.open(dbdir)
    try:
        replay_into(store, jdir, "DB1", mirror="MIR")
        for c, i in acks:
            assert store.get("load", (c, i)) == "v" * 100
            assert store.get("load", (c, i, "twin")) == i
        assert store.get("load", ("after",)) == 1
    finally:
        store.close()


FREEZER = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from engine.storage.journal import Entry, Journal, JournalError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))
    journal = Journal(sys.argv[1], "MIR", max_file_bytes=1 << 20)

    async def main():
        acked = 0
        try:
            while True:
                await journal.commit([Entry(acked, "DB1", "SET", "g", (acked,), "v" * 100)])
                acked += 1
        except JournalError as exc:
            print("failed", acked, exc, flush=True)
        try:
            await journal.commit([Entry(0, "DB1", "SET", "g", ("after",), 1)])
            print("accepted after failure")
        except JournalError as exc:
            print("frozen", exc, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.timeout(60)
def test_a_failed_journal_write_freezes_the_journal_and_keeps_what_was_acknowledged(tmp_path):
    jdir = str(tmp_path / "journal")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", FREEZER, jdir],
        capture_output=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
        timeout=50,
    )
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("failed "), out.stderr.decode()[-2000:]
    assert "File too large" in lines[0]
    assert lines[1].startswith("frozen ")
    acked = int(lines[0].split()[1])
    assert acked > 100
    on_disk = [r.subs[0] for r in JournalReader(jdir, "MIR").records_from()]
    assert on_disk[:acked] == list(range(acked))
