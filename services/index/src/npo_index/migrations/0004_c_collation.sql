-- The primary key's text columns compare bytewise ("C"), as version_content and version_event
-- already do. Under the database's default collation (C.UTF-8 from the libc provider) every
-- comparison of the key's B-tree, on every upsert's descent and in the apply's ORDER BY, went
-- through strcoll; for these ASCII codes (patient ids, service domain URIs) the order is the
-- same, so FindContent's answers and pages do not change.
ALTER TABLE engagements
    ALTER COLUMN patient TYPE text COLLATE "C",
    ALTER COLUMN service_domain TYPE text COLLATE "C";
