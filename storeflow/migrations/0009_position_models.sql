-- The position estimator's learnt RF models (analytics.positions PathLossModel + RangeModel), stored
-- beside the presence model they are fitted with: the analyze job refines visit boundaries with the
-- position estimates, so every split of a period into ranges must estimate with the same models.
-- NULL on rows stored before this version: the job fits them on its next run and fills them in.
ALTER TABLE presence_models ADD COLUMN position_model jsonb;
