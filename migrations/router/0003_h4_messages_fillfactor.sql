-- Issue 11 (BENCHMARKS.md, lever 10): room on each page for every row's one update.
-- A message row is inserted by the takeover and updated once with its result
-- (DELIVERED, attempts, finished_at). At fillfactor 60 a page of ~550-byte rows
-- holds 8 of them and room for ~5 new versions, so a third of the updates could not
-- stay on the page (not HOT) and wrote three index entries each. At 45 a page holds
-- 6 rows and room for all their updates. Applies to pages written from now on.
ALTER TABLE messages SET (fillfactor = 45);
