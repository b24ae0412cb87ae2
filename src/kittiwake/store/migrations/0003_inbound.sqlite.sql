-- Kittiwake schema, version 3 (SQLite): inbound messages and opt-outs. Twin: 0003_inbound.postgresql.sql.

-- An inbound message waiting for its webhook (the number's SMS URL) and the TwiML the app answers.
-- Written in the same transaction as the inbound message itself, so none is lost; a worker leases
-- due jobs by moving next_attempt_at forward.
CREATE TABLE inbound_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_sid     TEXT NOT NULL,
    account_sid     TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX inbound_jobs_due ON inbound_jobs (next_attempt_at) WHERE state = 'pending';

-- Handsets that answered STOP (or another opt-out keyword) to one of our long codes: later sends from
-- that number to them are refused with 21610 until they opt back in (START, YES, UNSTOP).
CREATE TABLE opt_outs (
    sender       TEXT NOT NULL,
    handset      TEXT NOT NULL,
    account_sid  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (sender, handset)
);
