"""Warehouses other than the default DuckDB file (`warehouse.py`), each implementing the same write contract."""
