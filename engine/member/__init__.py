"""The instance process and its memberships.  instance: Instance, the process (listener, node,
up to ten memberships); membership: Membership, one mirror's member (journal, databases,
role); with the operations on them (requests, writer, dbops, download, adopt, membership_ops,
join, port, remove, tls_check), their configuration files (config, node, mirror_file) and
status (status).
"""
