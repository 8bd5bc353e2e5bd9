"""The result store (``sqlite``: every evaluation committed as it is measured) and its recovery (``repair``)."""
from .repair import StoreScan, repair_store, scan_store
from .sqlite import BUSY_TIMEOUT_S, FORMAT, STATUSES, VERSION, Record, Store

__all__ = ["BUSY_TIMEOUT_S", "FORMAT", "STATUSES", "VERSION", "Record", "Store", "StoreScan", "repair_store",
           "scan_store"]
