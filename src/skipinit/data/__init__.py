"""Data: canonical datasets (`canonical`), and the batch sources a trainer reads (`sources`).

The canonical datasets' API, which needs no torch, is also importable as `skipinit.data.<name>`;
the batch sources are imported from their modules.
"""

from skipinit.data.canonical import (  # noqa: F401
    SOURCES,
    DataNotFoundError,
    canonical_sizes,
    load_canonical,
    prepare,
    remedies,
    save_canonical,
    standardized,
    synthetic,
)
