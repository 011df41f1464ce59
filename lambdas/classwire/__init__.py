"""classwire: the code that runs in the Lambdas (core protocol, Redis model, fan-out) and its handlers."""
