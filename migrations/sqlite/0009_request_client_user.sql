-- The `user` an OpenAI client sends with a request (its own end-user id, for abuse tracing and its owner's
-- reference): stored on the request's ledger row and exported, never used for generation.
ALTER TABLE requests ADD COLUMN client_user TEXT;
