-- API tokens. Only a SHA-256 of each token is stored; the token itself is shown once at creation.
CREATE TABLE api_tokens (
    token_id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    stores      text[],                           -- NULL: every store
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    last_used_at timestamptz
);
