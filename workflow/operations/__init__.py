"""Verb-named operations: every change of state goes through one of these. Each writes
its audit event, flushes, and never commits (the caller commits once)."""
