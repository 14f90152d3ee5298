"""Command line of the member engine.

python -m engine agent --config AGENT_FILE     (see engine/agent/server.py)
python -m engine arbiter --listen HOST:PORT [--cert F --key F --ca F]
    an arbiter on its own (engine/failover/arbiter.py; an agent runs one with `arbiter`)
python -m engine instance --config FILE --member NAME
python -m engine instance --data-dir DIR [--name NAME --superserver HOST:PORT]
    an instance configured through the agent (engine/member/node.py, engine/member/instance.py)
    either form takes the superserver's connection limits (engine/wire/limits.py,
    docs/hardening.md): --superserver-max-connections N, --superserver-handshake-timeout S,
    --superserver-idle-timeout S, --superserver-frame-timeout S,
    --superserver-max-buffered-per-connection BYTES, --superserver-max-buffered-total BYTES
    (BYTES may end in KiB, MiB or GiB); with --data-dir they are recorded in node.json
    --superserver-auth auto|required|off: the application port's authentication
    (engine/member/app_auth.py; auto: required once the instance holds an application
    credential or has TLS configured); with --data-dir recorded in node.json
    --superserver-tls auto|required|off, --superserver-client-cert required|optional: the
    application port's TLS (engine/member/node.py SuperserverTLS; auto: TLS once the
    instance has TLS files or a mirror that requires TLS); with --data-dir in node.json
python -m engine status --config FILE|PLAN [--member NAME] [--json]
python -m engine admin --config FILE --member NAME ACTION [ARG]
    ARG is a database name, a comma list, or JSON ({"name": "DB", "catchup": true});
    actions in engine/PROTOCOL.md: create_database, add_database, download_database,
    activate, catchup, mount, dismount, remove_database, clear_failover_db,
    stop_mirroring, start_mirroring, dejournal_stop, dejournal_start, pause_database,
    resume_database, digest, positions
python -m engine cluster up -f FILE [-f FILE ...]
python -m engine cluster build -f PLAN
    start agents and non-member instances, then build the whole mirror of PLAN through
    the agents (engine/cluster/build.py; example: examples/mirror.toml)
python -m engine cluster down -f FILE [-f FILE ...]     (a mirror file or a build plan)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from engine.member.config import ConfigError, load_config
from engine.wire.limits import SETTINGS as LIMITS


def limit_flag(key: str) -> str:
    """The command-line option of a superserver limit: --superserver-idle-timeout, ..."""
    return "--superserver-" + key.removesuffix("_s").replace("_", "-")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Mirror Portal member engine")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("agent", help="run the host agent (options: python -m engine agent --help)")
    sub.add_parser("arbiter", help="run an arbiter on its own (python -m engine arbiter --help)")

    inst = sub.add_parser("instance", help="run one mirror member")
    inst.add_argument("--config", help="mirror configuration (TOML)")
    inst.add_argument("--member", help="member name in the configuration")
    inst.add_argument("--data-dir", help="instead of --config: configured through the agent")
    inst.add_argument("--name", help="with --data-dir, first start: the instance name")
    inst.add_argument("--superserver", help="with --data-dir: the superserver HOST:PORT")
    inst.add_argument("--log-level", default="INFO")
    inst.add_argument(
        "--superserver-auth",
        choices=("auto", "required", "off"),
        help="authentication on the application port: required, off, or auto (the default: "
        "required once the instance holds an application credential or has TLS configured)",
    )
    inst.add_argument(
        "--superserver-tls",
        choices=("auto", "required", "off"),
        help="TLS on the application port: required, off, or auto (the default: TLS once the "
        "instance has TLS files or belongs to a mirror that requires TLS)",
    )
    inst.add_argument(
        "--superserver-client-cert",
        choices=("required", "optional"),
        help="with TLS on the application port, must clients present a certificate from the "
        "instance's CA: required (the default) or optional (then a credential alone admits)",
    )
    for key, limit in LIMITS.items():
        unit = f" {limit.unit}" if limit.unit else ""
        inst.add_argument(
            limit_flag(key),
            dest=f"limit_{key}",
            metavar={"bytes": "BYTES", "s": "SECONDS"}.get(limit.unit, "N"),
            help=f"{limit.help} (default {limit.default}{unit}; {limit.low} to {limit.high})",
        )

    st = sub.add_parser("status", help="print member status (guide §5.1.1.1)")
    st.add_argument("--config", required=True, help="a mirror file or a build plan")
    st.add_argument("--member", help="only this member")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ad = sub.add_parser("admin", help="database and member operations on one member")
    ad.add_argument("--config", required=True)
    ad.add_argument("--member", required=True)
    ad.add_argument("action")
    ad.add_argument("arg", nargs="?", help='a database name, A,B, or JSON such as {"name": "DB"}')
    ad.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")

    cl = sub.add_parser(
        "cluster", help="start/stop a mirror on loopback, or build one through agents"
    )
    cl.add_argument("action", choices=("up", "build", "down"))
    cl.add_argument(
        "-f",
        "--file",
        action="append",
        required=True,
        help="mirror configuration, or build plan for build (repeatable)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:  # the agent has its own options (engine/agent/server.py)
        from engine.agent.server import main as agent_main

        return agent_main(argv[1:])
    if argv[:1] == ["arbiter"]:  # so has the arbiter (engine/failover/arbiter.py)
        from engine.failover.arbiter import main as arbiter_main

        return arbiter_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "instance":
            return _instance(args, argv)
        if args.command == "status":
            return _status(args.config, args.member, args.json)
        if args.command == "admin":
            return _admin(
                load_config(args.config), args.member, args.action, args.arg, args.timeout
            )
        return _cluster(args.action, args.file)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def _status(path: str, member: str | None, as_json: bool) -> int:
    """The members of a mirror file, or of a build plan such as `make run`'s demo mirror."""
    from engine.cluster.plan import is_plan, load_plan
    from engine.member.status import status_command
    from engine.wire.tls import superserver_client_context

    if is_plan(path):
        plan = load_plan(path)
        mirror, members, find = plan.mirror, plan.members, plan.member
        data_dir = plan.data_dir
    else:
        cfg = load_config(path)
        mirror, members, find = cfg.name, cfg.members, cfg.member

        def data_dir(m):
            return m.data_dir

    # a superserver that speaks TLS is reached as the admin token is read: from its data dir
    return status_command(
        mirror,
        [find(member)] if member else members,
        as_json,
        lambda m: superserver_client_context(data_dir(m)),
    )


def _cluster(action: str, files: list[str]) -> int:
    from engine.cluster.build import build_down, cluster_build
    from engine.cluster.launcher import cluster_down, cluster_up
    from engine.cluster.plan import is_plan

    plans = [f for f in files if is_plan(f)]
    if action == "up" and plans:
        print(f"{plans[0]} is a build plan: use 'cluster build -f {plans[0]}'", file=sys.stderr)
        return 2
    if action == "up":
        return cluster_up(files)
    if action == "build":
        static = [f for f in files if f not in plans]
        if static:
            print(
                f"{static[0]} names no [[hosts]]: a mirror file for 'cluster up', not a build plan",
                file=sys.stderr,
            )
            return 2
        return max(cluster_build(f) for f in files)
    rc = max((build_down(f) for f in plans), default=0)
    static = [f for f in files if f not in plans]
    return max(rc, cluster_down(static)) if static else rc


def _instance(args, argv: list[str]) -> int:
    from engine.member import app_auth
    from engine.member.instance import run_instance
    from engine.member.node import SuperserverTLS, limit_settings, load_node
    from engine.storage import dir_lock

    node = None
    given = {k: v for k in LIMITS if (v := getattr(args, f"limit_{k}")) is not None}
    if args.data_dir:
        lock = _hold_data_dir(args.data_dir)
        node = load_node(
            args.data_dir,
            args.name,
            args.superserver,
            given,
            args.superserver_auth,
            args.superserver_tls,
            args.superserver_client_cert,
        )
        cfg = member = None
        label = node.name
        limits = limit_settings(node.superserver_limits, "superserver limit ")
        auth = app_auth.AppAuth(node.data_dir, node.superserver_auth)
        superserver_tls = SuperserverTLS.of(node)
    elif args.config and args.member:
        cfg = load_config(args.config)
        member = label = cfg.member(args.member).name
        lock = _hold_data_dir(cfg.member(member).data_dir)
        limits = limit_settings(given, "superserver limit ")
        auth = app_auth.AppAuth(cfg.member(member).data_dir, args.superserver_auth or "auto")
        superserver_tls = SuperserverTLS(
            args.superserver_tls or "auto", args.superserver_client_cert or "required"
        )
    else:
        raise ConfigError("give --config FILE --member NAME, or --data-dir DIR")
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format=f"%(asctime)s {label} %(levelname)s %(name)s: %(message)s",
    )
    app_auth.install(auth)  # the superserver's connections find it (engine/member/session.py)
    logging.getLogger("engine.member.session").info(
        "superserver authentication mode %s; %d application credentials",
        auth.mode,
        len(auth.records()),
    )
    try:
        import uvloop  # optional: faster event loop when installed

        uvloop.install()
    except ImportError:
        pass
    if asyncio.run(run_instance(cfg, member, node, limits, superserver_tls)):
        # created, joined or left a mirror: start afresh as what it is now (same pid, so
        # the agent's pid file stays right)
        sys.stdout.flush()
        sys.stderr.flush()
        dir_lock.keep_across_exec(lock)
        os.execv(sys.executable, [sys.executable, "-m", "engine", "instance", *_restart_args(argv)])
    return 0


def _hold_data_dir(data_dir) -> int:
    from engine.storage import dir_lock

    try:
        return dir_lock.hold(Path(data_dir))
    except dir_lock.AlreadyRunning as exc:
        raise ConfigError(str(exc)) from None


def _restart_args(argv: list[str]) -> list[str]:
    # name and superserver are in node.json after the first start
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in ("--name", "--superserver"):
            skip = True
        elif not arg.startswith(("--name=", "--superserver=")):
            out.append(arg)
    return out


def _admin(cfg, member: str, action: str, arg: str | None, timeout: float = 30.0) -> int:
    import json

    from engine.client.app import Client, EngineError
    from engine.wire.admin_token import read_token
    from engine.wire.tls import TLSError, superserver_client_context

    m = cfg.member(member)
    value = arg
    if arg is not None and arg[:1] in ("{", "["):
        try:
            value = json.loads(arg)
        except json.JSONDecodeError as exc:
            print(f"argument is not valid JSON: {exc}", file=sys.stderr)
            return 2
    try:
        with Client(
            [str(m.superserver)],
            follow_primary=False,
            timeout=timeout,
            retries=0,
            admin_token=read_token(m.data_dir),
            ssl=superserver_client_context(m.data_dir),  # as the token: the instance's files
        ) as c:
            result = c.admin(action, value)
    except (EngineError, OSError, TLSError) as exc:
        print(f"{m.name}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result) if result is not None else "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
