"""Registry, content-addressed artifact store and ledger, behind one interface (:class:`Store`): one repository
per entity (``versions``, ``evaluations``, ``decisions``, ``channels``/``moves``, ``steps``, ``ledger_repo``, ``files``;
``gateway``, ``tokens``, ``pins``, ``pages``, ``release_reads``) over one unit of work (``session``), tables one
module per entity (``tables/``). Nothing outside this package opens a session or imports SQLAlchemy."""

from loopgate.store.artifacts import (
    ArtifactStore,
    copy_differences,
    copy_files,
    read_manifest,
    trusted_hashes,
    write_manifest,
)
from loopgate.store.registry import (
    CHANNELS,
    Approval,
    ArtifactHit,
    ArtifactReport,
    ChannelMove,
    Store,
    VersionInfo,
    VersionLink,
    parse_version_id,
)

__all__ = [
    "CHANNELS",
    "Approval",
    "ArtifactHit",
    "ArtifactReport",
    "ArtifactStore",
    "ChannelMove",
    "Store",
    "VersionInfo",
    "VersionLink",
    "copy_differences",
    "copy_files",
    "parse_version_id",
    "read_manifest",
    "trusted_hashes",
    "write_manifest",
]
