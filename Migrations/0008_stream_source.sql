-- A stream's ingest ports can be pinned to the addresses its camera or encoder sends from
-- (`stream add --source CIDR`); without a pin the edge follows one sender at a time.
ALTER TABLE streams ADD COLUMN source_cidr TEXT
    CHECK (source_cidr IS NULL OR (length(source_cidr) BETWEEN 3 AND 43 AND source_cidr NOT GLOB '*[^0-9A-Fa-f.:/]*'));
