"""An application on a mirror whose superserver requires authentication.

Make the application's credential through the agent of the primary's host (the secret is in
that answer only):

    curl -s -X POST https://HOST:2188/v1/instances/MIRRORA/app-credentials \\
         -H 'Content-Type: application/json' -d '{"name": "billing"}' ...   # mutual TLS

or, on the host, with the instance's admin token:

    .venv/bin/python -m engine admin --config examples/cluster.toml --member A \\
         app_credential_create '{"name": "billing"}'

then run this with the credential in the environment:

    MIRROR_APP_NAME=billing MIRROR_APP_SECRET=... .venv/bin/python examples/app_client.py \\
        127.0.0.1:21100 127.0.0.1:21110

The client authenticates every connection it opens (SCRAM-SHA-256: the secret never travels)
and checks that the instance holds the credential too; it follows the primary as usual.
"""

from __future__ import annotations

import os
import sys

from engine.client.app import Client, Unauthorized


def main(addresses: list[str]) -> int:
    credential = (os.environ["MIRROR_APP_NAME"], os.environ["MIRROR_APP_SECRET"])
    try:
        with Client(addresses or ["127.0.0.1:21100"], credential=credential) as db:
            db.set("USER", "Customer", (1, "name"), "Ada")
            print(db.get("USER", "Customer", (1, "name")))
    except Unauthorized as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
