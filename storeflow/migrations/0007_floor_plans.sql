-- Floor plan images (layout `plan:`), stored at layout import so the API can serve them without
-- access to the layout's directory. NULL when the floor has no plan.
ALTER TABLE floors ADD COLUMN plan_image bytea;
ALTER TABLE floors ADD COLUMN plan_media_type text
    CHECK (plan_media_type IN ('image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/svg+xml'));
