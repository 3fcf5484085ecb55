"""The live call console: a browser page served by the ingress at `/console`."""
