"""The intake API: a Flask app (api/app.py) whose views parse JSON, call one ledger use case
and render, served by granian through api/server.py."""
