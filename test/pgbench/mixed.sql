\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
BEGIN;
SET LOCAL statement_timeout = '10s';
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
END;
SET application_name = 'mixed';
SELECT set_config('search_path', 'public', false);
NOTIFY mixed, 'tick';
SELECT count(*) FROM pgbench_branches;
