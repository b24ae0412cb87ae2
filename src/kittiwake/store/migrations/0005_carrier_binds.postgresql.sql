-- Kittiwake schema, version 5 (PostgreSQL): who holds each bind slot of a carrier. Twin: 0005_carrier_binds.sqlite.sql.

-- An SMPP account usually allows one bind (max_binds): with several dispatcher processes, a slot is
-- leased to one process at a time, like a sender; a dead holder's slot is taken over when it lapses.
CREATE TABLE carrier_binds (
    carrier  TEXT NOT NULL,
    slot     BIGINT NOT NULL,
    owner    TEXT,
    expires  BIGINT,
    PRIMARY KEY (carrier, slot)
);
