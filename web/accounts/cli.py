"""The `user` and `token` commands: accounts and API tokens from the command line (audited as cli:<user>)."""
import sys

import click
from flask.cli import AppGroup

from web.accounts.actions import (create_token, create_user, delete_user, disable_user, enable_user, revoke_token,
                                  set_password)
from web.cli import cli_actor, user_errors
from web.db import db
from web.records import ApiToken, User
from web.readable import plural

user_cli = AppGroup("user", help="Create, list, disable, enable and delete accounts; set passwords.")
token_cli = AppGroup("token", help="Create, list and revoke API tokens.")


def read_password():
    """Ask for a password at the terminal (twice), or read one line from stdin when it is not a terminal."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


def find_user(name):
    """Return the account named `name`, or stop with a message."""
    user = db.session.execute(db.select(User).filter_by(username=name)).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"There is no user named {name!r}.")
    return user


@user_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "doctor"]), required=True)
@user_errors
def user_create(name, role):
    """Create an account; the password comes from the terminal or stdin."""
    create_user(cli_actor(), name, role, read_password())
    click.echo(f"Created {role} {name}.")


@user_cli.command("password")
@click.argument("name")
@user_errors
def user_password(name):
    """Set a user's password (it comes from the terminal or stdin); end their sessions and API tokens."""
    set_password(cli_actor(), find_user(name), read_password())
    click.echo(f"Password of {name} changed; their sessions ended and their API tokens were revoked.")


@user_cli.command("list")
def user_list():
    """List the accounts: name, role, state, number of API tokens, creation time (UTC)."""
    counts = dict(db.session.execute(db.select(ApiToken.user_id, db.func.count()).group_by(ApiToken.user_id)).all())
    for user in db.session.execute(db.select(User).order_by(User.username)).scalars():
        state = "enabled" if user.is_active else f"disabled since {user.disabled_at:%Y-%m-%d %H:%M}"
        click.echo(f"{user.username}\t{user.role}\t{state}\t{plural(counts.get(user.id, 0), 'token')}"
                   f"\tcreated {user.created_at:%Y-%m-%d %H:%M}")


@user_cli.command("disable")
@click.argument("name")
@user_errors
def user_disable(name):
    """Stop NAME from logging in; end their sessions and revoke their API tokens."""
    revoked = disable_user(cli_actor(), find_user(name))
    click.echo(f"Disabled {name}; {plural(revoked, 'API token')} revoked and every session ended.")


@user_cli.command("enable")
@click.argument("name")
def user_enable(name):
    """Let a disabled account log in again (its old sessions and API tokens stay void)."""
    enable_user(cli_actor(), find_user(name))
    click.echo(f"Enabled {name}.")


@user_cli.command("delete")
@click.argument("name")
@click.confirmation_option(prompt="Delete this account and its API tokens?")
def user_delete(name):
    """Delete NAME's account and its API tokens (the audit log keeps the name)."""
    delete_user(cli_actor(), find_user(name))
    click.echo(f"Deleted {name}.")


@token_cli.command("create")
@click.argument("name")
def token_create(name):
    """Print a new API token for user NAME (stored hashed: it is shown only now)."""
    row, token = create_token(cli_actor(), find_user(name))
    click.echo(f"API token {row.id} for {name} (shown once): {token}")


@token_cli.command("list")
@click.argument("name", required=False)
def token_list(name):
    """List the API tokens (of user NAME, when given): ID, user, creation time (UTC); never the tokens."""
    # An outer join: a token whose account was removed outside the application is listed too.
    query = db.select(ApiToken.id, ApiToken.user_id, User.username, ApiToken.created_at).outerjoin(
        User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if name:
        query = query.where(User.id == find_user(name).id)
    for token_id, user_id, username, created_at in db.session.execute(query):
        click.echo(f"{token_id}\t{username or removed_user(user_id)}\tcreated {created_at:%Y-%m-%d %H:%M}")


@token_cli.command("revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(1, 2 ** 63 - 1))
def token_revoke(token_id):
    """Revoke the API token ID (`flask token list` shows the IDs)."""
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise click.ClickException(f"There is no API token {token_id}.")
    owner = token.user.username if token.user is not None else removed_user(token.user_id)
    revoke_token(cli_actor(), token, owner)
    click.echo(f"Revoked API token {token_id} of {owner}.")


def removed_user(user_id):
    """Name an account that no longer exists (removed from the database outside the application)."""
    return f"removed account {user_id}"
