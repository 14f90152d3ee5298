"""An application on a mirror whose superserver requires TLS and authentication.

A mirror that requires TLS (examples/mirror.toml, built with `python -m engine cluster build`)
speaks TLS on its members' application ports too, and by default admits only clients that
present a certificate from the mirror's CA (docs/hardening.md, "Application port TLS").  Give
the application one of its own, not a member's:

    .venv/bin/python -m engine.wire.tls_cli make-cert var/mirror/certs --cn billing

Make the application's credential through the agent of the primary's host (the secret is in
that answer only):

    curl -s -X POST https://HOST:22180/v1/instances/MIRRORA/app-credentials \\
         -H 'Content-Type: application/json' -d '{"name": "billing"}' ...   # mutual TLS

or, on the host, with the instance's admin token:

    .venv/bin/python -m engine admin --config examples/cluster.toml --member A \\
         app_credential_create '{"name": "billing"}'

then run this with the credential, and the certificate when the mirror uses TLS, in the
environment:

    MIRROR_APP_NAME=billing MIRROR_APP_SECRET=... \\
    MIRROR_APP_CA=var/mirror/certs/ca.pem MIRROR_APP_CERT=var/mirror/certs/billing.pem \\
    MIRROR_APP_KEY=var/mirror/certs/billing-key.pem \\
        .venv/bin/python examples/app_client.py 127.0.0.1:22100 127.0.0.1:22110

Without MIRROR_APP_CA the client speaks plain TCP (a mirror without TLS, examples/cluster.toml).
The client checks the member's certificate against the CA and its name against the address,
authenticates every connection it opens (SCRAM-SHA-256: the secret never travels, and it
checks that the instance holds the credential too), and follows the primary as usual.
"""

from __future__ import annotations

import os
import sys

from engine.client.app import Client, EngineError, Unauthorized
from engine.wire.tls import TLSError


def main(addresses: list[str]) -> int:
    credential = (os.environ["MIRROR_APP_NAME"], os.environ["MIRROR_APP_SECRET"])
    # ca: the mirror's CA; cert and key: this application's own certificate
    tls = {k: os.environ.get(f"MIRROR_APP_{k.upper()}") for k in ("ca", "cert", "key")}
    try:
        with Client(addresses or ["127.0.0.1:21100"], credential=credential, **tls) as db:
            db.set("USER", "Customer", (1, "name"), "Ada")
            print(db.get("USER", "Customer", (1, "name")))
    except Unauthorized as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except (EngineError, TLSError) as exc:  # no member reached: TLS refused, or none answers
        print(f"cannot reach the mirror: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
