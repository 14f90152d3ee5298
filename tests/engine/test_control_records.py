"""What a backup does with the primary's control records about its databases (engine/member/
dbops.py on_control_record): a database made anew makes the copy of the old one obsolete (guide
§4.8.3); a record from before the copy's own incarnation began (a journal replayed, as after a
rebuild) leaves it alone; a copy being rebuilt becomes the primary's database as it is now."""

import asyncio
import json
from types import SimpleNamespace

from engine.member.dbops import on_control_record, primary_list_known
from engine.member.download import downloads_of, follow_the_primary
from engine.storage.databases import Catalog, DbEntry
from engine.storage.journal_codec import make_position


class Backup(SimpleNamespace):
    """A member as on_control_record sees it (hashable and weakly referable, as downloads_of
    needs)."""

    __hash__ = object.__hash__


def backup_with(tmp_path, *entries: DbEntry, primary_knows: dict | None = {}):  # noqa: B006
    catalog = Catalog(tmp_path)
    catalog.entries = {entry.name: entry for entry in entries}
    return Backup(
        catalog=catalog,
        primary_db_info=None if primary_knows is None else dict(primary_knows),
        primary_db_info_as_of=None,
        dejournal=None,
        member=SimpleNamespace(is_reporting=False),
        db_path=lambda name: tmp_path / "db" / name,
        downloading=set(),
    )


def control(action: str, name: str, incarnation: str, since: list, at: tuple):
    info = {"name": name, "incarnation": incarnation, "since": since, "created": False}
    return SimpleNamespace(position=make_position(*at), subs=(action, name), value=json.dumps(info))


def test_a_database_made_anew_after_the_copy_began_makes_the_copy_obsolete(tmp_path):
    backup = backup_with(tmp_path, DbEntry("APP", "old", since=[1, 100]))

    on_control_record(backup, control("add", "APP", "new", [1, 900], at=(1, 900)))

    assert backup.catalog.get("APP").obsolete is True


def test_a_record_from_before_the_copy_began_leaves_it_alone(tmp_path):
    # the copy is of the database made at 1:900; the journal replays the one made at 1:500
    backup = backup_with(tmp_path, DbEntry("APP", "newest", since=[1, 900]))

    on_control_record(backup, control("add", "APP", "earlier", [1, 500], at=(1, 500)))

    entry = backup.catalog.get("APP")
    assert (entry.obsolete, entry.incarnation) == (False, "newest")


def test_a_copy_being_rebuilt_becomes_the_primarys_database_not_an_obsolete_one(tmp_path):
    rebuilt = DbEntry("APP", "config-APP", needs_download=True, rebuilt=True)
    known = {"APP": {"incarnation": "config-APP", "since": None}}
    backup = backup_with(tmp_path, rebuilt, primary_knows=known)

    on_control_record(backup, control("remove", "APP", "config-APP", None, at=(1, 300)))
    on_control_record(backup, control("add", "APP", "anew", [1, 400], at=(1, 400)))

    entry = backup.catalog.get("APP")
    assert (entry.obsolete, entry.incarnation, entry.since) == (False, "anew", [1, 400])
    assert json.loads((tmp_path / "databases.json").read_text())["databases"][0]["rebuilt"] is True


def test_the_primarys_list_wakes_the_rebuilt_copies_waiting_to_try_again(tmp_path):
    rebuilt = DbEntry("APP", "config-APP", needs_download=True, rebuilt=True)
    other = DbEntry("OTHER", "x", needs_download=True)
    backup = backup_with(tmp_path, rebuilt, other, primary_knows=None)
    waits = downloads_of(backup).waiting
    waits["APP"], waits["OTHER"] = asyncio.Event(), asyncio.Event()
    listed = {"APP": {"name": "APP", "incarnation": "anew", "since": [1, 400]}}

    primary_list_known(backup, listed, make_position(1, 500))

    assert backup.primary_db_info == listed
    assert waits["APP"].is_set() and not waits["OTHER"].is_set()


def test_records_from_before_the_primarys_list_do_not_turn_it_back(tmp_path):
    # after a rebuild the member takes the primary's journal from its start: the list it was
    # given as of 1:950 already tells what these old records did
    rebuilt = DbEntry("APP", "config-APP", needs_download=True, rebuilt=True)
    backup = backup_with(tmp_path, rebuilt, primary_knows=None)
    now = {"APP": {"name": "APP", "incarnation": "B", "since": [1, 900]}}
    primary_list_known(backup, dict(now), make_position(1, 950))

    on_control_record(backup, control("remove", "APP", "config-APP", None, at=(1, 50)))
    on_control_record(backup, control("add", "APP", "A", [1, 100], at=(1, 100)))

    assert backup.primary_db_info == now
    assert (rebuilt.incarnation, rebuilt.since) == ("B", [1, 900])


def test_a_copy_downloaded_since_its_rebuild_is_obsolete_when_made_anew(tmp_path):
    # rebuilt but no longer waiting for its download (adopted on a primary, say): an ordinary copy
    copy = DbEntry("APP", "B", since=[1, 900], rebuilt=True)
    backup = backup_with(tmp_path, copy)

    on_control_record(backup, control("add", "APP", "C", [2, 50], at=(2, 50)))

    assert (copy.obsolete, copy.incarnation) == (True, "B")


def test_a_rebuilt_copy_waits_for_the_primarys_list_before_it_downloads(tmp_path):
    rebuilt = DbEntry("APP", "config-APP", needs_download=True, rebuilt=True)
    backup = backup_with(tmp_path, rebuilt, primary_knows=None)

    assert follow_the_primary(backup, rebuilt) == "waiting for the primary's list of its databases"
