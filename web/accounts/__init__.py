"""Accounts: logging in and out, the users page, and the user and token commands."""
