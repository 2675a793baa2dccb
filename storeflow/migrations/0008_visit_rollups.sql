-- Visit rollups for the reports (analytics/rollups.py): a store's customer visits packed per local
-- day and counter. The analyze job rebuilds the days a range touches in the transaction that
-- replaces the range's visits; reports read covered days from here and anything else from visits.

-- Which local days are rolled up, in which time zone (a store whose zone changed is not covered).
CREATE TABLE visit_rollup_days (
    store_id    integer NOT NULL REFERENCES stores ON DELETE CASCADE,
    day         date NOT NULL,                    -- local date in `timezone`
    timezone    text NOT NULL,
    day_start   timestamptz NOT NULL,             -- the local day as [day_start, day_end)
    day_end     timestamptz NOT NULL,
    built_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, day)
);
CREATE INDEX visit_rollup_days_span ON visit_rollup_days (store_id, day_start);

-- One row per (store, local day, counter, pass-by flag). Each bytea column is a vector with one
-- element per visit, all in the same visit order, in PostgreSQL's binary send format (big-endian):
-- start_ts, trip_start, trip_end = timestamptz_send (int8 µs since 2000-01-01 UTC); local_hour =
-- int2send; tag_id = int4send; dwell_s = float4send.
CREATE TABLE visit_rollups (
    store_id    integer NOT NULL,
    day         date NOT NULL,
    zone_id     integer NOT NULL,
    passby      boolean NOT NULL,
    n           integer NOT NULL,                 -- visits in the vectors
    start_ts    bytea NOT NULL,
    local_hour  bytea NOT NULL,
    tag_id      bytea NOT NULL,
    dwell_s     bytea NOT NULL,
    trip_start  bytea NOT NULL,
    trip_end    bytea NOT NULL,
    PRIMARY KEY (store_id, day, zone_id, passby),
    FOREIGN KEY (store_id, day) REFERENCES visit_rollup_days ON DELETE CASCADE
);
-- The vectors are not compressible (binary numbers): store them out of line without trying.
ALTER TABLE visit_rollups
    ALTER COLUMN start_ts SET STORAGE EXTERNAL, ALTER COLUMN local_hour SET STORAGE EXTERNAL,
    ALTER COLUMN tag_id SET STORAGE EXTERNAL, ALTER COLUMN dwell_s SET STORAGE EXTERNAL,
    ALTER COLUMN trip_start SET STORAGE EXTERNAL, ALTER COLUMN trip_end SET STORAGE EXTERNAL;
