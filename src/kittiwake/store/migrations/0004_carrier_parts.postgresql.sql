-- Kittiwake schema, version 4 (PostgreSQL): what an SMPP carrier said about each part of a message.
-- Twin: 0004_carrier_parts.sqlite.sql.

-- One row per submitted segment: the SMSC's message_id (normalised: lower case, no leading zeros) and,
-- once its receipt came, its final state. A message is delivered when all its parts are, undelivered
-- when any part is.
CREATE TABLE carrier_parts (
    carrier      TEXT NOT NULL,
    smsc_id      TEXT NOT NULL,
    message_sid  TEXT NOT NULL,
    part         BIGINT NOT NULL,
    parts        BIGINT NOT NULL,
    state        TEXT,
    error_code   BIGINT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (carrier, smsc_id)
);
CREATE INDEX carrier_parts_message ON carrier_parts (message_sid);
