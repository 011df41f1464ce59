"""Lambda entry points: each turns an API Gateway event into a call on the core and shapes the reply."""
