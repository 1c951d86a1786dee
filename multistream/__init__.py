"""The composition root: the one place that sees every layer.

`multistream serve` starts here (`multistream.cli`), and `multistream.app` assembles the Tornado
application from the handlers' route lists and the services `server.lifespan` opens. Everything
below points down only (handlers -> server -> store/compositor, tests/test_layers.py), so the code
that must import the handlers to list their routes lives above them, not inside `server/`.
"""
