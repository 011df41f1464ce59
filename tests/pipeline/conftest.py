"""The delivery pipeline's tests: the scripts the workflows call, the workflows themselves (parsed), and
the bootstrap stack."""
