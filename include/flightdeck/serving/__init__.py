"""The real-time gateway: FastAPI app, routing policies, cache, metrics, prediction log.

Start it with `flightdeck serve`; see flightdeck.serving.routes for the route table format.
"""
