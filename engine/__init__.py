"""Mirror Portal member engine: store, journal, dejournaling, replication, instance, client.

Plain Python (no Django).  Storage half: collation (subscript key encoding), store (one LMDB
environment per mirrored database), journal (+ journal_codec, journal_files), dejournal,
compression.  Each module's docstring describes its design and measured figures.
"""
