"""Mirror Portal member engine: store, journal, dejournaling, replication, instance, client.

Plain Python (no Django).  Storage half: collation (key encoding), store (LMDB per database),
journal (+ journal_codec), dejournal, compression.  See the module docstrings.
"""
