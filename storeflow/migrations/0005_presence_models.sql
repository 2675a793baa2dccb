-- Fitted zone-presence models (analytics.presence.PresenceModel), one per store and layout version.
-- `storeflow analyze` fits a model the first time it sees a store (or a changed layout, or when
-- asked with --refit) and reuses it afterwards, so that any split of a period into ranges decodes
-- with the same model and gives the same visits.
CREATE TABLE presence_models (
    model_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id    integer NOT NULL REFERENCES stores ON DELETE CASCADE,
    layout_sha256 text NOT NULL,                  -- of the zones/readers the model's states and antennas index
    fitted_at   timestamptz NOT NULL DEFAULT now(),
    from_ts     timestamptz NOT NULL,             -- reads it was fitted on
    to_ts       timestamptz NOT NULL,
    n_reads     bigint NOT NULL,
    model       jsonb NOT NULL
);
CREATE INDEX presence_models_store ON presence_models (store_id, layout_sha256, model_id DESC);
