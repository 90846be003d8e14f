"""Reliability: every promise the bot makes, proved by a test that injects the fault."""
