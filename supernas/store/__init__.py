"""The result store (``sqlite``: every evaluation committed as it is measured) and its recovery (``repair``)."""
from .base import Record, ResultStore
from .repair import StoreScan, repair_store, scan_store
from .sqlite import BUSY_TIMEOUT_S, FORMAT, STATUSES, VERSION, Store, open_store

__all__ = ["BUSY_TIMEOUT_S", "FORMAT", "STATUSES", "VERSION", "Record", "ResultStore", "Store", "StoreScan",
           "open_store", "repair_store", "scan_store"]
