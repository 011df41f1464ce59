"""`make bench`: the performance figures, each measured against its floor in the same run (`python -m bench`).

`fanout` times the @connections client against `connections_stub` (an @connections API with injected
latency); `events` builds API Gateway events and a Lambda context to call handlers directly (the handler
tests use both too); `load` drives the local system with many client processes.
"""
