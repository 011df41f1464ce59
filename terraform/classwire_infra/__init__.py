"""classwire's AWS infrastructure as CDKTF Python: one construct per AWS part, one stack per environment.

Read `stack.py` first: it wires the parts in the order a request meets them.
"""
