"""Link state: the store Protocol, its writer thread, in-memory and SQLite stores."""

from ._faults import FAULTS_ENV, injected_faults
from ._memory import InMemoryStore
from ._open import open_store
from ._protocol import LinkStore, RunRow, StoreError, StoreReader
from ._schema import SCHEMA_VERSION
from ._sqlite import SqliteReader, SqliteStore
from ._writer import StoreWriter

__all__ = [
    "FAULTS_ENV",
    "SCHEMA_VERSION",
    "InMemoryStore",
    "LinkStore",
    "RunRow",
    "SqliteReader",
    "SqliteStore",
    "StoreError",
    "StoreReader",
    "StoreWriter",
    "injected_faults",
    "open_store",
]
