"""Where call state lives between webhooks: this process's memory, or Redis.

Both implement `flowpbx.engine.storage.CallStore`, the seam the engine's service uses.
"""

from __future__ import annotations

from flowpbx.engine.storage import CallStore, CorruptState, StoredCall, StoreUnavailable

__all__ = ["CallStore", "CorruptState", "StoreUnavailable", "StoredCall"]
