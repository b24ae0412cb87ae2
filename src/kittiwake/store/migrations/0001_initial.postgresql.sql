-- Kittiwake schema, version 1 (PostgreSQL). The SQLite twin is 0001_initial.sqlite.sql:
-- same tables, columns and indexes; only the auto-increment key and integer widths differ.
-- Times are integer microseconds since the Unix epoch, UTC.

CREATE TABLE accounts (
    sid               TEXT PRIMARY KEY,
    friendly_name     TEXT NOT NULL,
    auth_token        TEXT NOT NULL,
    status            TEXT NOT NULL,
    owner_account_sid TEXT NOT NULL,
    date_created      BIGINT NOT NULL,
    date_updated      BIGINT NOT NULL
);
CREATE INDEX accounts_owner ON accounts (owner_account_sid, date_created);

CREATE TABLE phone_numbers (
    sid                    TEXT PRIMARY KEY,
    account_sid            TEXT NOT NULL REFERENCES accounts (sid),
    phone_number           TEXT NOT NULL UNIQUE,
    kind                   TEXT NOT NULL,
    friendly_name          TEXT NOT NULL,
    sms_url                TEXT,
    sms_method             TEXT NOT NULL DEFAULT 'POST',
    sms_fallback_url       TEXT,
    sms_fallback_method    TEXT NOT NULL DEFAULT 'POST',
    sms_application_sid    TEXT,
    status_callback        TEXT,
    status_callback_method TEXT NOT NULL DEFAULT 'POST',
    date_created           BIGINT NOT NULL,
    date_updated           BIGINT NOT NULL
);
CREATE INDEX phone_numbers_account ON phone_numbers (account_sid, date_created);

CREATE TABLE applications (
    sid                     TEXT PRIMARY KEY,
    account_sid             TEXT NOT NULL REFERENCES accounts (sid),
    friendly_name           TEXT NOT NULL,
    sms_url                 TEXT,
    sms_method              TEXT NOT NULL DEFAULT 'POST',
    sms_fallback_url        TEXT,
    sms_fallback_method     TEXT NOT NULL DEFAULT 'POST',
    sms_status_callback     TEXT,
    message_status_callback TEXT,
    status_callback         TEXT,
    status_callback_method  TEXT NOT NULL DEFAULT 'POST',
    voice_url               TEXT,
    voice_method            TEXT NOT NULL DEFAULT 'POST',
    date_created            BIGINT NOT NULL,
    date_updated            BIGINT NOT NULL
);
CREATE INDEX applications_account ON applications (account_sid, date_created);

-- seq orders messages by acceptance: lists page on it (newest first) and, per sender, the
-- dispatcher takes the oldest queued message first.
CREATE TABLE messages (
    seq                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid                   TEXT NOT NULL UNIQUE,
    account_sid           TEXT NOT NULL REFERENCES accounts (sid),
    api                   TEXT NOT NULL,
    from_number           TEXT NOT NULL,
    to_number             TEXT NOT NULL,
    body                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    direction             TEXT NOT NULL,
    num_segments          BIGINT NOT NULL,
    num_media             BIGINT NOT NULL DEFAULT 0,
    error_code            BIGINT,
    error_message         TEXT,
    price                 TEXT,
    price_unit            TEXT,
    status_callback       TEXT,
    application_sid       TEXT,
    messaging_service_sid TEXT,
    validity_period       BIGINT NOT NULL,
    date_created          BIGINT NOT NULL,
    date_updated          BIGINT NOT NULL,
    date_sent             BIGINT
);
CREATE INDEX messages_account ON messages (account_sid, seq);
CREATE INDEX messages_queued_by_sender ON messages (from_number, seq) WHERE status = 'queued';
