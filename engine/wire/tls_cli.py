"""Command line for throwaway certificates and agent credentials (demos, tests, local clusters).

    python -m engine.wire.tls_cli make-ca DIR [--name "Demo CA"] [--days 30]
    python -m engine.wire.tls_cli make-cert DIR --cn NAME [--org ORG] [--days 7] [--host H ...]
                                          [--usage member|server|client]
    python -m engine.wire.tls_cli show CERT [--ca CA]      # DN, issuer, expiry; exit 1 if unusable
    python -m engine.wire.tls_cli make-credential FILE     # a random agent credential (mode 0600)

make-cert signs with the CA made by make-ca in the same DIR (ca.pem + ca-key.pem).  --usage
says what the certificate is for: a mirror member (the default; serves and connects), an agent
(server) or the portal / an operator's tool (client); only a member certificate can join a
mirror.  Keys are written owner-only; none of these files belong in the repository.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from engine.wire.tls import (
    CERT_USAGES,
    TLSError,
    check_certificate,
    load_ca,
    make_ca,
    make_cert,
    write_private_file,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine tls", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ca = sub.add_parser("make-ca", help="a new throwaway CA in DIR (ca.pem, ca-key.pem)")
    ca.add_argument("dir")
    ca.add_argument("--name", default="Mirror Portal throwaway CA")
    ca.add_argument("--days", type=int, default=30)
    cert = sub.add_parser("make-cert", help="a certificate signed by DIR's CA")
    cert.add_argument("dir")
    cert.add_argument("--cn", required=True, help="common name (the DN is CN=<cn>,O=<org>)")
    cert.add_argument("--org", default="Mirror Portal")
    cert.add_argument("--days", type=float, default=7)
    cert.add_argument("--host", action="append", help="subject alternative name (repeatable)")
    cert.add_argument("--name", help="file name stem (default: the CN)")
    cert.add_argument(
        "--usage",
        choices=sorted(CERT_USAGES),
        default="member",
        help="member (serves and connects), server (an agent) or client (the portal, a tool)",
    )
    show = sub.add_parser("show", help="DN, issuer and expiry of a certificate")
    show.add_argument("cert")
    show.add_argument("--ca", help="also check that this CA issued it")
    cred = sub.add_parser("make-credential", help="write a random agent credential")
    cred.add_argument("file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "make-ca":
            ca = make_ca(args.dir, name=args.name, days=args.days)
            print(f"CA {ca.dn}: {ca.cert_path} (key {ca.key_path})")
        elif args.command == "make-cert":
            hosts = tuple(args.host) if args.host else ("127.0.0.1", "localhost")
            paths = make_cert(
                load_ca(args.dir),
                args.dir,
                args.cn,
                org=args.org,
                days=args.days,
                hosts=hosts,
                name=args.name,
                usage=args.usage,
            )
            info = check_certificate(paths.cert)
            print(
                f"{info['subject_dn']}: {paths.cert} (key {paths.key}), expires {info['not_after']}"
            )
        elif args.command == "show":
            print(json.dumps(check_certificate(args.cert, args.ca), indent=2))
        else:
            write_private_file(args.file, (secrets.token_urlsafe(32) + "\n").encode(), True)
            print(f"credential written to {args.file}")
    except TLSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileExistsError as exc:
        print(f"error: {exc.filename} exists; not overwriting a credential", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
