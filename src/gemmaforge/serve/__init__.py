"""`gemmaforge serve`: an OpenAI-compatible HTTP server over a continuous-batching engine.

engine.py (the batch loop), app.py (routes), protocol.py (request bodies), metrics.py, cli.py.
"""
