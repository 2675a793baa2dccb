"""StoreFlow ingest."""
