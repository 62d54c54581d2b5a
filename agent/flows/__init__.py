"""Flows: what the agent does with a token or a POS request, provider by provider."""
