"""Optimizing agents: one protocol (`fapo.agents.base.Agent`), several implementations."""
