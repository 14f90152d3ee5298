"""Saying DC_HELLO by hand, as a member that knows the mirror secret would
(engine/wire/mirror_secret.py; docs/hardening.md "Data channel authentication")."""

from __future__ import annotations

import socket

from engine.wire import mirror_secret
from engine.wire.protocol import Frame, FrameDecoder, MsgType, encode_frame, unpack


class Hello:
    """A data channel opened by hand: `say` sends the hello and answers a challenge with
    the proof made from `secret` (none: no answer), keeping the socket open after."""

    def __init__(self, address, secret: str | None):
        host, port = address if isinstance(address, tuple) else (address.host, address.port)
        self.sock = socket.create_connection((host, port), timeout=5)
        self.decoder = FrameDecoder()
        self.secret = secret
        self.nonce = mirror_secret.new_nonce()
        self.challenge: bytes | None = None
        self.later: list[Frame] = []  # frames read with the one returned

    def __enter__(self) -> Hello:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def next(self, timeout: float = 5.0) -> Frame | None:
        sock, decoder = self.sock, self.decoder
        sock.settimeout(timeout)
        while True:
            if self.later:
                return self.later.pop(0)
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not chunk:
                return None
            frames = decoder.feed(chunk)
            if frames:
                self.later = frames[1:]
                return frames[0]

    def until_closed(self, timeout: float = 10.0) -> list[Frame]:
        """Every frame until the primary closes the connection (or says nothing for
        `timeout`)."""
        frames = []
        while (frame := self.next(timeout)) is not None:
            frames.append(frame)
        return frames

    def say(self, hello: dict, proof: bytes | None = None) -> Frame | None:
        """The primary's answer to `hello`: DC_WELCOME or ERROR (after the challenge, if
        one came and a secret is known), or the DC_CHALLENGE itself without a secret."""
        hello = {"nonce": self.nonce, **hello}
        self.sock.sendall(encode_frame(MsgType.DC_HELLO, 1, hello))
        frame = self.next()
        if frame is None or frame.type != MsgType.DC_CHALLENGE or self.secret is None:
            return frame
        self.challenge = unpack(frame.body)["nonce"]
        if proof is None:
            proof = mirror_secret.member_proof(
                self.secret, hello["mirror"], hello["member"], hello["nonce"], self.challenge
            )
        self.sock.sendall(encode_frame(MsgType.DC_HELLO, 2, {**hello, "proof": proof}))
        return self.next()


def say_hello(address, hello: dict, secret: str | None) -> Frame | None:
    """One hello on a fresh connection; the answer."""
    with Hello(address, secret) as h:
        return h.say(hello)
