"""Jobs that change who is in a mirror and how it runs (guide §4.5, §4.7, §4.9, §4.10, §5.2,
§5.4): each sends the operation to the member that must do it (most to the primary), waits for
the members to show the outcome, and ends with a refresh."""

from __future__ import annotations

from members import reconcile, services, sync
from members.agents import AgentConnectionError, AgentError, refusals
from members.models import Mirror, PendingDNUpdate
from members.operations.base import (
    Where,
    host_of,
    member_of,
    member_status,
    mirror_of,
    primary,
    read,
    refresh,
    wait_connected,
    wait_s,
    where,
)
from tasks.errors import PermanentJobError, TransientJobError


def _wait_member(run, place: Where, mirror: str, progress) -> None:
    """Wait until the instance, restarted by a create or a join, answers as a member."""

    def poll():
        try:
            status, _ = member_status(place, mirror)
        except PermanentJobError as exc:  # 409: not a member (yet), the restart is under way
            return False, str(exc)
        return status not in ("", "Not Initialized"), status or "restarting"

    run.wait(
        poll,
        what=f"{place.instance} to answer as a member of {mirror}",
        timeout=wait_s(run),
        progress=progress,
    )


def _on_host(run) -> Where:
    host, instance = host_of(run), run.params["instance"]
    sync.discover_host(host)
    found = host.instances.filter(name=instance).select_related("host").first()
    if found is None:
        raise PermanentJobError(f"Host {host.name} has no instance {instance}.")
    return Where(found)  # as discovered just now: a retried job skips what is done


def create_mirror(run):
    """The instance creates the mirror and becomes its first failover member and primary."""
    name = run.params["name"].upper()
    with _on_host(run) as place:
        if place.seen.mirror_name != name or not place.seen.member_name:
            with refusals(f"Creating {name} on {place.instance}"):
                place.agent.create_mirror(
                    place.instance, name, run.params["private"], None, run.params.get("settings")
                )
            run.step(f"{place.instance} creates mirror {name} and restarts", progress=20)
        _wait_member(run, place, name, (20, 50))

        def is_primary():
            status, _ = member_status(place, name)
            return status == "Primary", status

        run.wait(
            is_primary,
            what=f"{place.instance} to be Primary",
            timeout=wait_s(run),
            progress=(50, 80),
        )
        view = sync.read_mirror(place.host, place.instance, name)
        if run.params.get("arbiter"):
            result_arbiter = set_arbiter(run, place, name, run.params["arbiter"])
    result = refresh(run, None, adopt=True, view=view)
    run.job.mirror = Mirror.objects.get(name=name)
    run.job.save(update_fields=["mirror"])
    if run.params.get("portal_settings"):  # the arbiter and the VIP are the portal's to keep
        services.update_mirror(
            run.job.requested_by, run.job.mirror, **run.params["portal_settings"]
        )
    if run.params.get("arbiter"):  # and then the primary's word on the arbiter
        reconcile.record_arbiter(name, result_arbiter)
        result["arbiter"] = result_arbiter
    return result


def set_arbiter(run, place, mirror_name: str, arbiter: str) -> str | None:
    """The arbiter given to the primary, which hands it to every member (guide §3.1.4); the
    answer is the arbiter the primary now keeps ("host:port" or None)."""
    with refusals(f"Arbiter on {place.instance}"):
        answer = place.agent.set_arbiter(place.instance, arbiter or None, mirror=mirror_name)
    kept = answer.get("arbiter")
    run.step(f"The primary {place.instance} keeps contact with arbiter {kept or '(none)'}")
    return kept


def join_mirror(run):
    """The instance joins through the primary's superserver; on a TLS mirror it then waits for
    authorization (the job ends there, saying so), else until Backup or Connected."""
    mirror = mirror_of(run)
    view = read(mirror)
    if not view.primary:
        raise PermanentJobError(f"Mirror {mirror.name} has no primary to join through.")
    through = view.member(view.primary).superserver
    member_type = run.params["type"]
    with _on_host(run) as place:
        name = (run.params.get("member") or place.instance).upper()
        if view.member(name) is None:
            # a TLS mirror needs no secret, but keeps working with it if TLS is turned off
            secret = _mirror_secret(mirror)
            with refusals(f"{place.instance} joining {mirror.name}"):
                answer = place.agent.join_mirror(
                    place.instance,
                    mirror.name,
                    through,
                    member_type,
                    member=run.params.get("member"),
                    private=run.params.get("private") or None,
                    secret=secret,
                )
            pending = " (pending authorization)" if answer.get("pending") else ""
            run.step(
                f"{place.instance} joins {mirror.name} through {through}{pending}", progress=20
            )
        _wait_member(run, place, mirror.name, (20, 50))
        view = read(mirror)
        joined = view.member(name)
        if joined is not None and not joined.authorized:
            run.step(f"{name} waits for authorization on the primary {view.primary}")
            result = refresh(run, mirror, view=view)
            result["pending"] = True
            return result
        wait_connected(run, place, mirror.name, member_type)
    return refresh(run, mirror)


def _mirror_secret(mirror) -> str:
    """The primary's mirror secret, passed from its agent to the joining one and kept nowhere
    in the portal (engine/wire/mirror_secret.py: a mirror without TLS needs it to join)."""
    with primary(mirror) as place, refusals(f"Reading {mirror.name}'s secret on {place.instance}"):
        return place.agent.mirror_secret(place.instance, mirror=mirror.name)


def authorize_member(run):
    member, mirror = member_of(run), mirror_of(run)
    with primary(mirror) as place, refusals(f"Authorizing {member.name} on {place.instance}"):
        place.agent.authorize_member(place.instance, member.name, mirror=mirror.name)
    run.step(f"{member.name} authorized on the primary {place.instance}", progress=40)
    with where(mirror.name, member.name) as at_member:
        wait_connected(run, at_member, mirror.name, member.member_type)
    return refresh(run, mirror)


def _on_primary(run, what: str, method: str, *args, done: str, **kwargs):
    """One call to the primary about the job's member, then a refresh: `done` (with
    {member} and {primary}) is the log line once the primary has answered."""
    member, mirror = member_of(run), mirror_of(run)
    with primary(mirror) as place, refusals(f"{what} {member.name} on {place.instance}"):
        getattr(place.agent, method)(
            place.instance, member.name, *args, mirror=mirror.name, **kwargs
        )
    run.step(done.format(member=member.name, primary=place.instance), progress=60)
    return refresh(run, mirror)


def reject_member(run):
    return _on_primary(
        run, "Rejecting", "reject_member", done="{member} rejected on the primary {primary}"
    )


def _dn_decision(run, authorize: bool):
    member, mirror = member_of(run), mirror_of(run)
    update = PendingDNUpdate.objects.filter(pk=run.params.get("update")).first()
    verb = "Authorizing" if authorize else "Rejecting"
    with primary(mirror) as place, refusals(f"{verb} the new DN of {member.name}"):
        call = place.agent.authorize_dn_update if authorize else place.agent.reject_dn_update
        call(place.instance, member.name, mirror=mirror.name)
    run.step(
        f"{verb[:-3]}ed on the primary {place.instance}: {update and update.new_dn}", progress=40
    )
    if authorize:  # with its new certificate accepted, the member connects again
        with where(mirror.name, member.name) as at_member:
            wait_connected(run, at_member, mirror.name, member.member_type)
    return refresh(run, mirror)


def authorize_dn_update(run):
    return _dn_decision(run, True)


def reject_dn_update(run):
    return _dn_decision(run, False)


def edit_mirror(run):
    """Mirror settings on the primary; turning TLS on first verifies every member (Verify SSL)
    and the job shows each member's result."""
    mirror = mirror_of(run)
    changes = dict(run.params.get("settings") or {})
    if "arbiter" in run.params:
        with primary(mirror) as place:
            kept = set_arbiter(run, place, mirror.name, run.params["arbiter"])
        reconcile.record_arbiter(mirror.name, kept)
        if not changes:
            return {**refresh(run, mirror), "arbiter": kept}
    if not changes:
        run.step("No setting the engine keeps changed: reading the members", progress=50)
        return refresh(run, mirror)
    with primary(mirror) as place, refusals(f"Settings on {place.instance}"):
        answer = place.agent.edit_mirror(
            place.instance,
            mirror=mirror.name,
            **changes,
            **({"skip_verify": True} if run.params.get("skip_verify") else {}),
        )
    run.step(f"The primary {place.instance} took {', '.join(sorted(changes))}", progress=60)
    for row in answer.get("verified") or []:  # turning TLS on: Verify SSL, member by member
        outcome = "ok" if row.get("ok") else row.get("problem") or "not verified"
        run.step(f"Verify SSL {row.get('member')}: {outcome}")
    result = refresh(run, mirror, adopt=set(changes))
    result["answer"] = answer
    return result


def update_member_address(run):
    return _on_primary(
        run,
        "New addresses of",
        "update_member_address",
        run.params.get("superserver"),
        run.params.get("private"),
        done="The primary {primary} recorded {member}'s new addresses",
    )


def set_superserver_port(run):
    member, mirror = member_of(run), mirror_of(run)
    port = int(run.params["port"])
    with where(mirror.name, member.name) as place:
        with refusals(f"Superserver port of {place.instance}"):
            place.agent.set_superserver_port(place.instance, port)
        run.step(f"{place.instance} restarts on superserver port {port}", progress=40)
        _wait_member(run, place, mirror.name, (40, 80))
    return refresh(run, mirror)


def remove_member(run):
    """The primary removes the member from the mirror's configuration (guide §4.10.3)."""
    return _on_primary(
        run, "Removing", "remove_member", done="The primary {primary} removed {member}"
    )


def leave_mirror(run):
    """The member itself leaves (an async, guide §4.10.2)."""
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place, refusals(f"{member.name} leaving"):
        place.agent.leave_mirror(
            place.instance, bool(run.params.get("remove_db_attribute")), mirror=mirror.name
        )
    run.step(f"{member.name} left {mirror.name}", progress=60)
    return refresh(run, mirror)


def _member_switch(run, method: str, done: str):
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place, refusals(f"{member.name}"):
        if method.endswith("mirroring"):
            getattr(place.agent, method)(place.instance, mirror=mirror.name)
        else:
            getattr(place.agent, method)(place.instance)
    run.step(f"{member.name}: {done}", progress=60)
    return refresh(run, mirror)


def stop_mirroring(run):
    return _member_switch(run, "stop_mirroring", "mirroring stopped")


def start_mirroring(run):
    return _member_switch(run, "start_mirroring", "mirroring started")


def stop_dejournaling(run):
    return _member_switch(run, "stop_dejournaling", "dejournaling stopped")


def start_dejournaling(run):
    return _member_switch(run, "start_dejournaling", "dejournaling started")


def _remove_primary_config(run, place, name: str, flags: dict) -> None:
    """The primary, last: step 1 (once it knows the others have gone) clears its Join-Mirror
    flag and restarts it; step 2, asked of the restarted process, removes the configuration.
    A call that reaches the old process before its restart is step 1 again, so the job waits
    for the answer that says step 2."""

    def ask(want: int):
        try:
            answer = place.agent.remove_mirror_config(place.instance, **flags)
        except AgentError as exc:
            if exc.status == 503 or (exc.status == 409 and "first" in exc.message):
                return False, exc.message  # restarting, or the others' departure not seen yet
            raise PermanentJobError(f"{name}: refused ({exc.status}): {exc.message}") from None
        except AgentConnectionError as exc:
            raise TransientJobError(str(exc)) from None
        step = answer.get("step")
        return step == want or (want == 1 and step == 2), f"step {step} done"

    run.wait(
        lambda: ask(1),
        what=f"{name} to clear its Join-Mirror flag",
        timeout=wait_s(run),
        progress=(70, 80),
    )
    run.wait(
        lambda: ask(2),
        what=f"{name} to remove its configuration",
        timeout=wait_s(run),
        progress=(80, 95),
    )


def remove_mirror(run):
    """Every member's mirror configuration goes (guide §6.9 - §6.12): the others first, then
    the primary in its two steps. The portal forgets the mirror once the members have."""
    mirror = mirror_of(run)
    view = read(mirror)
    flags = {
        "remove_db_attribute": bool(run.params.get("remove_db_attribute")),
        "remove_tls": bool(run.params.get("remove_tls")),
    }
    others = [m for m in view.members if m.name != view.primary]
    for i, member in enumerate(others):
        what = f"Removing the configuration of {member.name}"
        with where(mirror.name, member.name) as place, refusals(what):
            place.agent.remove_mirror_config(place.instance, mirror=mirror.name, **flags)
        run.step(
            f"{member.name}: mirror configuration removed",
            progress=10 + 50 * (i + 1) // max(1, len(others)),
        )
    if view.primary:
        with where(mirror.name, view.primary) as place:
            _remove_primary_config(run, place, view.primary, flags)
    services.forget_mirror(f"member {view.primary}", mirror, reason="removed on every member")
    return {"mirror": view.name, "removed_from": [m.name for m in view.members]}
