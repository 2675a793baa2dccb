-- Results of `storeflow analyze`: rewritten per store and time range, so re-running a range replaces it.

CREATE TABLE analysis_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id    integer NOT NULL REFERENCES stores ON DELETE CASCADE,
    from_ts     timestamptz NOT NULL,
    to_ts       timestamptz NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    params      jsonb NOT NULL DEFAULT '{}',
    stats       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX analysis_runs_store ON analysis_runs (store_id, from_ts);

-- One row per trip (one store visit of one tag). A trip belongs to the range its start falls in.
CREATE TABLE trips (
    store_id    integer NOT NULL,
    tag_id      integer NOT NULL,
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    n_reads     integer NOT NULL,
    path        text[] NOT NULL DEFAULT '{}',     -- counter ids of its visits (not pass-bys), in order
    customer    boolean NOT NULL,                 -- false for staff and asset tags
    PRIMARY KEY (store_id, tag_id, start_ts)
);
CREATE INDEX trips_store_start ON trips (store_id, start_ts);

-- Counter visits and pass-bys (SPEC section 3). A visit belongs to the range its start falls in.
CREATE TABLE visits (
    store_id    integer NOT NULL,
    tag_id      integer NOT NULL,
    zone_id     integer NOT NULL,
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    dwell_s     real NOT NULL,
    passby      boolean NOT NULL,
    customer    boolean NOT NULL,
    trip_start  timestamptz NOT NULL,
    trip_end    timestamptz NOT NULL
);
CREATE INDEX visits_store_start ON visits (store_id, start_ts);
CREATE INDEX visits_store_zone_start ON visits (store_id, zone_id, start_ts);
CREATE INDEX visits_tag ON visits (tag_id, start_ts);

-- Heatmap: customer tag-seconds per base cell (the store's cell_m) per floor per hour.
CREATE TABLE heatmap_cells (
    store_id    integer NOT NULL,
    floor       integer NOT NULL,
    bucket      timestamptz NOT NULL,             -- start of the hour (UTC)
    cell_m      real NOT NULL,
    ix          smallint NOT NULL,                -- cell column: x_m in [ix*cell_m, (ix+1)*cell_m)
    iy          smallint NOT NULL,
    seconds     real NOT NULL,
    PRIMARY KEY (store_id, floor, bucket, ix, iy)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- Unique keys of a hypertable must include its time column: they do (start_ts, bucket).
        PERFORM create_hypertable('visits', 'start_ts', chunk_time_interval => INTERVAL '7 days');
        PERFORM create_hypertable('trips', 'start_ts', chunk_time_interval => INTERVAL '7 days');
        PERFORM create_hypertable('heatmap_cells', 'bucket', chunk_time_interval => INTERVAL '30 days');
    END IF;
END
$$;
