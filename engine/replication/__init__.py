"""The data channel between members: the primary's side (sender: Replicator; member_link:
MemberLink, one member's channel; handshake: a member's DC_HELLO), a backup's or async's side
(receiver: ReplicaLink), journal compression, and the source side of a database download
(snapshot_source).  What the channel asks of a membership (who may connect, the configuration
it carries) goes through a gate the member provides (gate).
"""
