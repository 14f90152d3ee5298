"""Leaving a mirror and Remove Mirror Configuration (guide §4.9, §4.10.2-§4.10.4), on an instance
configured through the agent.

    remove_mirror_config {remove_db_attribute?, remove_tls?, mirror?}   (engine/member/instance.py)
    leave_mirror {remove_db_attribute?}        one membership (engine/member/membership_ops.py)

remove_mirror_config removes the instance's mirror configuration entirely, where
leave_mirror leaves one mirror.  Options, as the guide's dialog offers them:
  - remove_db_attribute: the databases lose their mirrored attribute (false: they keep it,
    and on rejoining come back needing Activate and Catchup; §4.10.2);
  - remove_tls: the instance forgets its TLS configuration (node.json's certificate, key and
    CA; the files themselves stay where they are).

A backup or async leaves (telling the primary when connected) and restarts as a non-member.
A reporting async leaves all its mirrors, unless `mirror` names one (and then keeps its TLS
configuration, which its other mirrors use).

The primary may remove its configuration only as the mirror's last member (others, pending
ones included, are removed first: refused, naming them), and in two steps (§4.9, §4.10.4):
  1. the first call clears the membership's Join-Mirror flag and restarts the instance, which
     then keeps the configuration but does not run as the member (status "Not Initialized"
     with a waiting_reason saying what is left to do; creating or joining is refused);
  2. the second call removes the configuration.  The databases stay on disk as the working,
     non-mirrored copies (with or without the mirrored attribute as asked); no restart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.member import mirror_file as ms
from engine.member.changes import arg_map, require_dynamic
from engine.storage.databases import Catalog, Refused

if TYPE_CHECKING:
    from engine.member.config import MirrorConfig
    from engine.member.instance import Instance
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.instance")
OP = "remove_mirror_config"


def _options(arg) -> dict:
    if arg is None:
        arg = {}
    if not isinstance(arg, dict):
        raise Refused(OP, None, "expected {remove_db_attribute?, remove_tls?, mirror?}")
    unknown = sorted(set(arg) - {"remove_db_attribute", "remove_tls", "mirror"})
    if unknown:
        raise Refused(OP, None, f"unknown option(s) {', '.join(unknown)}")
    return arg


def dormant_reason(cfg: MirrorConfig) -> str:
    return (
        f"the Join-Mirror flag of mirror {cfg.name} is cleared: call remove_mirror_config again "
        "to remove its configuration (guide §4.10.4)"
    )


def remove_mirror_config(instance: Instance, arg) -> dict:
    arg = _options(arg)
    remove_attr = bool(arg.get("remove_db_attribute", False))
    remove_tls = bool(arg.get("remove_tls", False))
    if instance.dormant:
        return _second_step(instance, remove_attr, remove_tls)
    if not instance.members:
        raise Refused(OP, None, f"instance {instance.node.name} has no mirror configuration")
    mirror = arg.get("mirror")
    if mirror is not None:
        membership = instance.members.get(str(mirror).upper())
        if membership is None:
            raise Refused(OP, None, f"this instance is not a member of mirror {mirror}")
        targets = [membership]
    else:
        targets = list(instance.members.values())
    primary = next((i for i in targets if i.role == "primary"), None)
    if primary is not None:
        return _first_step(instance, primary)
    staying = sorted(set(instance.members) - {i.cfg.name for i in targets})
    if remove_tls and staying:
        raise Refused(
            OP,
            None,
            f"the TLS configuration serves mirror(s) {', '.join(staying)} too: remove the "
            "configuration of every mirror (no 'mirror') to remove it",
        )
    for membership in targets:
        leave_mirror(membership, {"remove_db_attribute": remove_attr})  # restarts the process
    if remove_tls:
        _forget_tls(instance)
    names = [i.cfg.name for i in targets]
    return {
        "mirror": names[0],
        "mirrors": names,
        "removed": True,
        "db_attribute_removed": remove_attr,
        "tls_removed": remove_tls,
        "restarting": True,
    }


def _first_step(instance: Instance, membership) -> dict:
    others = [m.name for m in membership.cfg.members if m is not membership.member]
    if others:
        raise Refused(
            OP,
            None,
            f"the primary removes its configuration as the last member: remove "
            f"{', '.join(others)} first (guide §4.9)",
        )
    ms.clear_join_flag(membership.data_dir)
    log.warning("Join-Mirror flag of mirror %s cleared; restarting", membership.cfg.name)
    instance.request_restart()
    return {
        "mirror": membership.cfg.name,
        "mirrors": [membership.cfg.name],
        "step": 1,
        "join_flag_cleared": True,
        "removed": False,
        "restarting": True,
        "next": "after the restart, call remove_mirror_config again to remove the configuration",
    }


def _second_step(instance: Instance, remove_attr: bool, remove_tls: bool) -> dict:
    names = []
    for cfg, _member in list(instance.dormant.values()):
        directory = cfg.source.parent
        catalog = Catalog(directory)
        if catalog.path.exists():
            catalog.load([], failover_db=True)
            drop_databases(catalog, remove_attr)
        ms.remove_local(directory)
        names.append(cfg.name)
        log.warning(
            "mirror %s configuration removed; its databases stay as local data (attribute %s)",
            cfg.name,
            "removed" if remove_attr else "kept",
        )
    instance.dormant.clear()
    if remove_tls:
        _forget_tls(instance)
    return {
        "mirror": names[0],
        "mirrors": names,
        "step": 2,
        "removed": True,
        "db_attribute_removed": remove_attr,
        "tls_removed": remove_tls,
        "restarting": False,
    }


def _forget_tls(instance: Instance) -> None:
    node = instance.node
    node.tls_cert = node.tls_key = node.tls_ca = None
    node.save()
    log.warning("TLS configuration of instance %s removed", node.name)


# -- leaving one mirror (leave_mirror, engine/member/membership_ops.py ACTIONS) ---------


def leave_mirror(membership: Membership, arg):
    """Leave the mirror (tell the primary when connected) and remove the local configuration,
    keeping or removing the databases' mirrored attribute (§4.10.2); the process restarts as
    a non-member."""
    op = "leave_mirror"
    require_dynamic(membership, op)
    arg = arg_map(op, arg)
    remove_attr = bool(arg.get("remove_db_attribute", False))
    if membership.role == "primary":
        others = [m.name for m in membership.cfg.members if m is not membership.member]
        if others:
            raise Refused(
                op,
                None,
                f"the primary leaves last: remove {', '.join(others)} first (guide §4.9)",
            )
    elif membership.replica is not None:
        membership.replica.leave()
    drop_databases(membership.catalog, remove_attr)
    ms.remove_local(membership.data_dir)
    log.warning(
        "left mirror %s (mirrored attribute %s)",
        membership.cfg.name,
        "removed" if remove_attr else "kept",
    )
    membership.request_restart()
    return {"mirror": membership.cfg.name, "left": True, "db_attribute_removed": remove_attr}


def drop_databases(catalog, remove_attr: bool) -> None:
    """The databases' mirrored attribute on leaving: removed (the catalog goes; the files
    stay as local data), or kept (§4.10.2: on rejoining they come back, and need Activate and
    Catchup)."""
    if remove_attr:
        catalog.path.unlink(missing_ok=True)
        return
    for entry in catalog.entries.values():
        entry.activated = entry.caught_up = False
    catalog.save()
