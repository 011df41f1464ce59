"""classwire's AWS infrastructure as CDKTF Python: one construct per AWS part, one stack per environment.

Read `stack.py` first: it wires the parts in the order a request meets them.
"""

from classwire_infra import provider_bindings

# Before any construct imports the provider's bindings: they load one submodule at a time (5 s, not 55 s).
provider_bindings.install()
