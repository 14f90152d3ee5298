"""The host agent (`python -m engine agent`): the /v1 control API described in
engine/agent_api.yaml (server, auth, errors, ops, mirror), what it knows of the host's
instances (probe, watch), the status stream (stream) and journal files served to peers
(journal).  Its configuration file: config.
"""
