"""Registry, content-addressed artifact store and ledger, behind one interface (:class:`Store`)."""

from loopgate.store.artifacts import ArtifactStore
from loopgate.store.registry import CHANNELS, Approval, ChannelMove, Store, VersionInfo, parse_version_id

__all__ = ["CHANNELS", "Approval", "ArtifactStore", "ChannelMove", "Store", "VersionInfo", "parse_version_id"]
