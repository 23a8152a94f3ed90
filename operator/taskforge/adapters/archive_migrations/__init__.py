"""The run archive's schema: numbered SQL files, applied in order by adapters/archive_db.py.

A file is never edited once released: a change is a new file with the next number.
"""
