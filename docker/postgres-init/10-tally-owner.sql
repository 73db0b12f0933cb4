-- Runs once, when the postgres service initialises an empty data volume.
-- `tally` owns the tally database and the tables its migrations create, and creates the
-- API's and the metrics' roles (CREATEROLE), but is no superuser: a superuser would
-- bypass row-level security.
CREATE ROLE tally LOGIN CREATEROLE PASSWORD 'tally';
ALTER DATABASE tally OWNER TO tally;
