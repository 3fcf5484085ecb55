"""The post-call service: signed webhooks from call events, and the call index."""
