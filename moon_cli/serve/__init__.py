"""Search as a service: a model and an index loaded once (engine), an HTTP API and a web page (app)."""
