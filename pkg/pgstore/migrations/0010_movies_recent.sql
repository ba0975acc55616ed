-- The web page's movie chooser (GET /v1/movies): the movies whose reviews
-- changed last.
CREATE INDEX movies_last_changed_idx ON movies (last_changed_at DESC, movie_id);
