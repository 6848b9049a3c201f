-- Which serving process admitted a request: a `running` row whose process died (kill -9, power loss) is settled
-- as `interrupted` when that node starts again, its reservation released, so it never locks the user out.
ALTER TABLE requests ADD COLUMN node TEXT;
CREATE INDEX requests_running ON requests (status, node);
