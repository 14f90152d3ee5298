"""The member engine of Mirror Portal: the processes that hold a mirror's databases and ship
its journal (plain Python, no Django).

Subpackages, each importing only those listed after it (checked by `lint-imports`, see
.importlinter and docs/architecture.md): cluster, agent, member, replication, storage,
client, wire, and the rule catalog (rules).
"""
