"""The local cloud: the same system as AWS, on this machine (make deploy ENV=local)."""
