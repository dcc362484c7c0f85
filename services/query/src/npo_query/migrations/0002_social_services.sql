-- A route may declare its logical address social-services only (SoL information): the
-- overview never calls it (design.md §5.5).
ALTER TABLE routes ADD COLUMN social_services boolean NOT NULL DEFAULT false;
