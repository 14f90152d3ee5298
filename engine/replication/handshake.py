"""What the primary does with a member's DC_HELLO (engine/PROTOCOL.md, "Data channel").

The handshake decides whether a member may have a data channel, and from where in the journal
it starts; the Replicator (engine/replication/sender.py) then keeps the link it makes.

- Who it is.  The hello names this mirror and one of its members, or asks to join through the
  gate (engine/replication/gate.py; guide §3.1.2).  Without TLS a mirror with a secret first
  has the member prove it (DC_CHALLENGE and a second hello, engine/wire/mirror_secret.py)
  before anything in its hello counts; with TLS the client certificate, not the hello, says
  who connected.
- Where it starts.  From the journal end its hello gives.  A member can hold bytes the primary
  lost (a batch is shipped just before it is written here, and kill -9 can fall in between):
  it is told where to cut.  A member ahead of the primary, or whose position lies in a journal
  file the primary does not have (purged), is refused.
- The same journal.  Equal lengths prove nothing after a failover (guide §3.3.2), so the bytes
  just before that position are compared by content; a member whose journal differs is
  refused, and has to be rebuilt (guide §5.7).

DC_WELCOME then tells the member the primary's term, the codec (guide §3.5.3), the journal
end, the cut and the configuration, and the new link catches up
(engine/replication/member_link.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from typing import TYPE_CHECKING

from cryptography.x509.oid import NameOID

from engine.replication.compression import choose_codec
from engine.replication.gate import JoinRefused
from engine.replication.member_link import MemberLink
from engine.storage.journal import list_files, tail_digest
from engine.storage.journal_codec import pos_from_wire, pos_wire
from engine.wire import mirror_secret
from engine.wire.protocol import Frame, MsgType, RequestError, encode_frame, unpack
from engine.wire.tls import peer_certificate

if TYPE_CHECKING:
    from engine.member.session import Connection
    from engine.replication.sender import Replicator

log = logging.getLogger("engine.replication.sender")


def _check_peer(conn: Connection, name: str) -> None:
    """With TLS the certificate, not the HELLO, says who connected: its CN must be the member."""
    ssl_object = conn.transport.get_extra_info("ssl_object") if conn.transport else None
    cert = peer_certificate(ssl_object) if ssl_object is not None else None
    if cert is None:
        raise ValueError("no client certificate on a mirror that requires TLS")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if name not in cns:
        raise ValueError(f"certificate {cert.subject.rfc4514_string()!r} is not member {name}'s")


class Handshake:
    """The primary's answers to DC_HELLO, for its Replicator."""

    def __init__(self, rep: Replicator):
        self.rep = rep
        self.membership = rep.membership
        self.gate = rep.gate
        self.refused: dict[str, str] = {}  # member -> why its last data channel was refused
        # connection -> (primary nonce, member nonce, name) of a challenge awaiting its proof
        self.challenges: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def accept(self, conn: Connection, frame: Frame) -> None:
        cfg = self.membership.cfg
        try:
            hello = unpack(frame.body)
            if not isinstance(hello, dict):
                raise ValueError("DC_HELLO body must be a map")
            if hello.get("mirror") != cfg.name:
                raise ValueError(
                    f"mirror {hello.get('mirror')!r} is not this member's mirror {cfg.name}"
                )
            name = str(hello.get("member"))
            proof = None
            if cfg.secret is not None and not cfg.tls:
                proof = self._check_secret(conn, frame, hello, name)
                if proof is None:
                    return  # challenged: the proof comes in a second hello
            member = cfg.find(name) or self.gate.register_join(conn, name, hello.get("join"))
            if member.name == self.membership.member.name:
                raise ValueError("a member cannot connect to itself")
            if cfg.dynamic:
                self.gate.check_identity(conn, member, hello)
            elif cfg.tls:
                _check_peer(conn, member.name)
            codecs = hello.get("codecs") or []
            if not isinstance(codecs, list):
                raise ValueError("codecs must be a list")
            position = pos_from_wire(hello.get("position"))
            if position is not None and (position.file_seq < 0 or position.offset < 0):
                raise ValueError(f"journal position {position} is negative")
        except JoinRefused as exc:
            # a member awaiting authorization asks twice a second: log each reason once
            reason = f"data channel refused: {exc}"
            quiet = self.refused.get(name) == reason
            if cfg.find(name) is not None:  # a stranger's names must not pile up here
                self.refused[name] = reason
            conn.reject_stream(reason, frame.req_id, quiet=quiet)
            return
        except RequestError as exc:  # a join the mirror cannot take (guide §3.1.2)
            conn.reject_stream(f"join refused: {exc.message}", frame.req_id)
            return
        except ValueError as exc:  # ConfigError is a ValueError
            conn.reject_stream(f"bad data channel handshake: {exc}", frame.req_id)
            return
        self.refused.pop(member.name, None)
        if not self.rep.member_says_hello(member.name, hello.get("failover_state")):
            conn.reject_stream("this primary missed a later one: it stops", frame.req_id)
            return
        to_backup = member.is_failover
        mode = cfg.failover_compression if to_backup else cfg.async_compression
        ctype = cfg.failover_compression_type if to_backup else cfg.async_compression_type
        codec = choose_codec(mode, ctype, to_backup, cfg.tls, set(codecs))
        end = self.membership.journal.end_position
        cut = self._cut_for(position)
        if cut is not None:
            log.warning(
                "member %s has journal beyond ours (%s): it must cut at %s",
                member.name,
                position,
                cut,
            )
            position = cut
        elif position is not None and end is not None and position > end:
            conn.reject_stream(
                f"member journal position {position} is ahead of the primary's {end}", frame.req_id
            )
            return
        gap = self._gap_for(position)
        if gap is not None:
            conn.reject_stream(gap, frame.req_id)
            return
        if cut is None and not self._same_journal(position, hello.get("tail")):
            conn.reject_stream(
                f"data channel refused: member {member.name}'s journal before {position} is not "
                "the primary's: its data is inconsistent with the mirror; rebuild it (guide "
                "§5.7)",
                frame.req_id,
            )
            return
        link = MemberLink(self.rep, conn, member.name, member.type, codec, position)
        self.rep.add_link(link)  # replaces the member's old link, if it has one
        conn.data_link = link
        conn.write(
            encode_frame(
                MsgType.DC_WELCOME,
                frame.req_id,
                {
                    "primary": self.membership.member.name,
                    "term": self.membership.fstate.term,  # engine/failover/state.py
                    "codec": codec,
                    "end": pos_wire(end),
                    "qos_ms": cfg.qos_timeout_ms,
                    "cut": pos_wire(cut),
                    # what the journal before the cut holds here, for the member to compare
                    "cut_tail": self._tail(cut),
                    # the primary's mirrored databases (missing / Orphaned on the member)
                    "databases": self.membership.catalog.wire(),
                    "config": self.gate.config_wire() if cfg.dynamic else None,
                    "proof": proof,  # the primary's own proof of the mirror secret
                },
            )
        )
        log.info(
            "member %s (%s) connected from %s at %s, codec %s",
            member.name,
            member.type,
            conn.peer,
            position,
            codec,
        )
        link.task = asyncio.get_running_loop().create_task(
            link.catch_up(), name=f"catchup-{member.name}"
        )

    def _check_secret(self, conn: Connection, frame: Frame, hello: dict, name: str):
        """Without TLS a member proves the mirror secret (engine/wire/mirror_secret.py) before
        anything in its hello counts, its name included.  None when a challenge was sent and
        the proof is awaited; else the primary's own proof, for DC_WELCOME."""
        cfg = self.membership.cfg
        try:
            member_nonce = mirror_secret.check_nonce(hello.get("nonce"))
        except mirror_secret.SecretError as exc:
            raise JoinRefused(
                f"member {name} did not begin the mirror secret handshake ({exc})"
            ) from None
        challenged = self.challenges.pop(conn, None)
        if challenged is None:
            primary_nonce = mirror_secret.new_nonce()
            self.challenges[conn] = (primary_nonce, member_nonce, name)
            conn.write(encode_frame(MsgType.DC_CHALLENGE, frame.req_id, {"nonce": primary_nonce}))
            return None
        primary_nonce, first_nonce, first_name = challenged
        expected = mirror_secret.member_proof(
            cfg.secret, cfg.name, name, member_nonce, primary_nonce
        )
        if (first_nonce, first_name) != (member_nonce, name) or not mirror_secret.same(
            expected, hello.get("proof")
        ):
            raise JoinRefused(f"member {name} did not prove the mirror secret")
        me = self.membership.member.name
        return mirror_secret.primary_proof(cfg.secret, cfg.name, me, member_nonce, primary_nonce)

    def _gap_for(self, position) -> str | None:
        """Why catch-up cannot start at `position`, a member's journal end: it lies in a
        journal file this primary does not have (purged, or never written).  None if it can."""
        if position is None:
            return None
        files = dict(list_files(self.membership.journal_dir, self.membership.cfg.name))
        if files and position.file_seq not in files:
            return (
                f"member journal position {position} is in journal file {position.file_seq}, "
                "which the primary does not have (purged?)"
            )
        return None

    def _tail(self, position) -> str | None:
        return tail_digest(self.membership.journal_dir, self.membership.cfg.name, position)

    def _same_journal(self, position, theirs) -> bool:
        """The member's journal just before its end holds what ours holds there (compared
        by content: equal lengths prove nothing after a failover, guide §3.3.2).  True when
        either side has nothing to compare."""
        ours = self._tail(position)
        return ours is None or not isinstance(theirs, str) or ours == theirs

    def _cut_for(self, position):
        """Where a member's journal must be cut to be a prefix of ours, or None if it is one
        (as far as lengths tell).  A member can hold bytes we lost: a batch is shipped just
        before it is written here, and kill -9 can fall in between."""
        if position is None:
            return None
        end = self.membership.journal.end_position
        seq, offset = position
        if seq == end.file_seq:
            return end if offset > end.offset else None
        if seq > end.file_seq:
            return None  # files we never had: refused as "ahead"
        files = dict(list_files(self.membership.journal_dir, self.membership.cfg.name))
        if seq not in files:
            return None  # purged here; nothing to compare with
        size = os.path.getsize(self.membership.journal_dir / files[seq])
        return position.__class__(seq, size) if offset > size else None
