-- Several GitHub Apps (issue 18).
--   runners.app_id: the App that registered the runner (NULL before this migration: the one
--   App there was). runners.installation_id is now set for every registration: the
--   installation the App registered it as, which clean-up calls use.
ALTER TABLE runners ADD COLUMN app_id BIGINT;
