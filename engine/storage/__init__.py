"""What a member keeps on disk: subscript collation, one LMDB store per database (store), the
journal and its files and record codec (journal, journal_files, journal_codec), applying
journal records to the stores (dejournal) and the catalog of mirrored databases with their
statuses (databases).
"""
