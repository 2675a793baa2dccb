-- Report queries (analytics/reports.py).
-- "Customer tags seen in a period" selects the trips that overlap it (start < to AND end >= from). On
-- the trips hypertable (chunked by start_ts) only "start < to" prunes chunks, so without this index a
-- report for last month probes every older chunk row by row; with it, each old chunk answers from the
-- index at once.
CREATE INDEX IF NOT EXISTS trips_store_end ON trips (store_id, end_ts);
