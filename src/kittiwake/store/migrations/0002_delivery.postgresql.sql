-- Kittiwake schema, version 2 (PostgreSQL): what the delivery engine needs. Twin: 0002_delivery.sqlite.sql.

-- The status callback URL, resolved at create (StatusCallback vs the Application's callback), the
-- instant a queued message stops being worth sending (date_created + ValidityPeriod), and what the
-- carrier said when it took the submission.
ALTER TABLE messages ADD COLUMN callback_url TEXT;
ALTER TABLE messages ADD COLUMN expires_at BIGINT;
ALTER TABLE messages ADD COLUMN submitted_at BIGINT;
ALTER TABLE messages ADD COLUMN carrier_message_id TEXT;
CREATE INDEX messages_queued_expiry ON messages (expires_at) WHERE status = 'queued';
CREATE INDEX messages_in_flight ON messages (from_number, seq) WHERE status = 'sending';
CREATE INDEX messages_carrier_id ON messages (carrier_message_id) WHERE carrier_message_id IS NOT NULL;

-- One row per sender that ever had queued work: its backlog in segments (the 10-hour cap at create
-- reads it without counting rows) and its pacing state. tat is the GCRA "theoretical arrival time",
-- the earliest wall-clock instant (epoch microseconds) of its next submission, so that a restart
-- neither bursts nor stalls.
CREATE TABLE senders (
    phone_number    TEXT PRIMARY KEY,
    queued_segments BIGINT NOT NULL DEFAULT 0,
    tat             BIGINT NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_expires   BIGINT
);
CREATE INDEX senders_with_work ON senders (phone_number) WHERE queued_segments > 0;

-- The durable webhook outbox. Rows are written in the same transaction as the status change they
-- report; a worker leases due rows by moving next_attempt_at forward, so a crashed worker's rows
-- come back when the lease ends.
CREATE TABLE callbacks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_sid     TEXT NOT NULL,
    message_sid     TEXT,
    url             TEXT NOT NULL,
    method          TEXT NOT NULL,
    params          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    state           TEXT NOT NULL DEFAULT 'pending',
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    finished_at     BIGINT,
    last_status     BIGINT,
    last_error      TEXT
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'pending';

-- What the simulated carrier took, in submission order, for /sim/messages; receipts still to send
-- survive a restart.
CREATE TABLE sim_messages (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_sid        TEXT NOT NULL,
    message_sid        TEXT NOT NULL,
    carrier_message_id TEXT NOT NULL,
    from_number        TEXT NOT NULL,
    to_number          TEXT NOT NULL,
    body               TEXT NOT NULL,
    segments           BIGINT NOT NULL,
    submitted_at       BIGINT NOT NULL,
    outcome            TEXT NOT NULL,
    error_code         BIGINT,
    receipt_due_at     BIGINT,
    receipt_done       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sim_messages_account ON sim_messages (account_sid, id);
CREATE INDEX sim_messages_receipts ON sim_messages (receipt_due_at) WHERE receipt_done = 0;
