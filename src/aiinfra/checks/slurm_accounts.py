"""``blueprint``-phase validators of ``slurm.accounts`` and ``slurm.users``: what ``sacctmgr`` would
refuse or silently do otherwise (an unknown QoS or parent, a default QoS the account may not use, a
user in several accounts with no default account), refused before anything reaches slurmdbd.

Members synced from a unix group are known only on the slurmdbd host (``getent group``): these
checks see the users named in the blueprint; the slurm role's sync handles the rest
(roles/slurm/README.md, "Accounts and users").
"""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.catalog.names import suggest
from aiinfra.checks.registry import BlueprintView, error, validator
from aiinfra.errors import Problem
from aiinfra.spec.models import Slurm, SlurmAccount

ROOT_ACCOUNT = "root"  # every cluster's top account, made by `sacctmgr add cluster`
# The QoS slurmdbd creates itself and gives the root association (slurmdbd.conf(5), DefaultQOS;
# accounting_storage_mysql.c adds 'normal' when the QoS table is created).
BUILTIN_QOS = "normal"


def _accounts_path(i: int, *rest: str | int) -> tuple:
    return ("slurm", "accounts", i, *rest)


def effective_qos(accounts: dict[str, SlurmAccount], name: str) -> set[str]:
    """The QoS an account's jobs may use: its own list, else its nearest ancestor's, else root's
    (``normal``). Slurm resolves an association without a QoS list from its parents the same way."""
    seen: set[str] = set()
    while name in accounts and name not in seen:
        seen.add(name)
        if accounts[name].qos:
            return set(accounts[name].qos)
        name = accounts[name].parent
    return {BUILTIN_QOS}


def memberships(slurm: Slurm) -> dict[str, list[str]]:
    """User -> the accounts that name it, in blueprint order (group members are not known here)."""
    out: dict[str, list[str]] = {}
    for account in slurm.accounts:
        for user in dict.fromkeys(account.users):
            out.setdefault(user, []).append(account.name)
    return out


@validator()
def slurm_accounts(v: BlueprintView) -> Iterator[Problem]:
    slurm = v.bp.slurm
    if slurm is None or not (slurm.accounts or slurm.users):
        return
    if not any("slurmdbd" in g.roles for g in v.bp.node_groups):
        yield error(("slurm", "accounts"), "slurm-accounts-without-slurmdbd",
                    "slurm.accounts needs Slurm's accounting, but no node group has role slurmdbd",
                    "add roles: [slurmdbd] to a management group, or remove slurm.accounts and slurm.users")
    yield from _account_tree(slurm)
    yield from _account_qos(slurm)
    yield from _users(slurm)


def _account_tree(slurm: Slurm) -> Iterator[Problem]:
    by_name: dict[str, SlurmAccount] = {}
    for i, account in enumerate(slurm.accounts):
        if account.name == ROOT_ACCOUNT:
            yield error(_accounts_path(i, "name"), "slurm-account-reserved",
                        "'root' is the cluster's top account, which Slurm creates itself",
                        "give the account another name; accounts without a parent go under root")
        elif account.name in by_name:
            yield error(_accounts_path(i, "name"), "duplicate-name", f"account '{account.name}' declared twice",
                        "merge the two entries into one account")
        else:
            by_name[account.name] = account
        for j, user in enumerate(account.users):
            if user in account.users[:j]:
                yield error(_accounts_path(i, "users", j), "duplicate-name",
                            f"user '{user}' is listed twice in account '{account.name}'", "list each member once")
    for i, account in enumerate(slurm.accounts):
        parent = account.parent
        if account.name == ROOT_ACCOUNT:  # reported above
            continue
        if parent != ROOT_ACCOUNT and parent not in by_name:
            yield error(_accounts_path(i, "parent"), "slurm-account-undefined-parent",
                        f"parent account '{parent}' is not declared{suggest(parent, by_name)}",
                        "declare it under slurm.accounts, or leave parent out (root)")
            continue
        chain = [account.name]
        while parent in by_name and parent not in chain:
            chain.append(parent)
            parent = by_name[parent].parent
        if parent in chain:
            yield error(_accounts_path(i, "parent"), "slurm-account-cycle",
                        f"account '{account.name}' is its own ancestor: {' -> '.join([*chain, parent])}",
                        "accounts form a tree under root: point one parent of the loop at root or another account")


def _account_qos(slurm: Slurm) -> Iterator[Problem]:
    declared = {q.name for q in slurm.qos} | {BUILTIN_QOS}
    by_name = {a.name: a for a in slurm.accounts}
    for i, account in enumerate(slurm.accounts):
        for j, qos in enumerate(account.qos):
            if qos not in declared:
                yield error(_accounts_path(i, "qos", j), "slurm-account-undefined-qos",
                            f"account '{account.name}' grants QoS '{qos}', which is not declared"
                            f"{suggest(qos, sorted(declared))}", "declare it under slurm.qos, or grant one of: "
                            f"{', '.join(sorted(declared))}")
        default = account.default_qos
        if default is None:
            continue
        if default not in declared:
            yield error(_accounts_path(i, "default_qos"), "slurm-account-undefined-qos",
                        f"account '{account.name}' defaults to QoS '{default}', which is not declared"
                        f"{suggest(default, sorted(declared))}", "declare it under slurm.qos or name a declared QoS")
        elif default not in (granted := effective_qos(by_name, account.name)):
            yield error(_accounts_path(i, "default_qos"), "slurm-default-qos-not-granted",
                        f"account '{account.name}' defaults to QoS '{default}' but may only use "
                        f"{', '.join(sorted(granted))} (sacctmgr refuses a default outside the account's QoS)",
                        f"add '{default}' to the account's qos, or default to one of them")


def _users(slurm: Slurm) -> Iterator[Problem]:
    member_of = memberships(slurm)
    by_name = {a.name: a for a in slurm.accounts}
    group_accounts = [a.name for a in slurm.accounts if a.unix_group]
    settings = {u.name: u for u in slurm.users}
    for i, user in enumerate(slurm.users):
        if user.name in [u.name for u in slurm.users[:i]]:
            yield error(("slurm", "users", i, "name"), "duplicate-name", f"user '{user.name}' has two entries",
                        "merge the two entries into one")
        accounts = member_of.get(user.name, [])
        if not accounts and not group_accounts:
            yield error(("slurm", "users", i, "name"), "slurm-user-in-no-account",
                        f"user '{user.name}' has settings but is a member of no account",
                        "add the user to an account's users, or remove the entry")
        default = user.default_account
        if default is None:
            continue
        path = ("slurm", "users", i, "default_account")
        if default not in by_name:
            yield error(path, "slurm-user-undefined-account",
                        f"user '{user.name}' defaults to account '{default}', which is not declared"
                        f"{suggest(default, by_name)}", "name one of the accounts under slurm.accounts")
        elif default not in accounts and not by_name[default].unix_group:
            yield error(path, "slurm-user-not-member",
                        f"user '{user.name}' defaults to account '{default}' but is not one of its members"
                        + (f" (member of: {', '.join(accounts)})" if accounts else ""),
                        f"add '{user.name}' to the users of '{default}', or default to one of its accounts")
    for user, accounts in member_of.items():
        if len(accounts) > 1 and (user not in settings or settings[user].default_account is None):
            i, account = next((i, a) for i, a in enumerate(slurm.accounts) if a.name == accounts[1])
            yield error(_accounts_path(i, "users", account.users.index(user)), "slurm-user-ambiguous-default",
                        f"user '{user}' is a member of {', '.join(accounts)}: which one do jobs that name no "
                        "account use?", f"add slurm.users: [{{name: {user}, default_account: {accounts[0]}}}]")
