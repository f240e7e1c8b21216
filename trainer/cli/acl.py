"""`recstream acl`: least-privilege Redis ACL commands for the writer and for readers."""

from __future__ import annotations

import argparse

from trainer.cli.options import add_options
from trainer.options import Option

HELP = "print least-privilege Redis ACL commands for the writer and for readers"
DESCRIPTION = (
    "Print ACL SETUSER commands: the writer may write only the namespace's keys, readers may "
    "only read them. Replace the password placeholders, then run them with redis-cli as an "
    "administrator (or put them, without 'ACL SETUSER', in an ACL file)."
)
OPTIONS = (
    Option("--writer-user", "recstream-writer", "ACL user of the writer"),
    Option("--reader-user", "recstream-reader", "ACL user of readers"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)


def run(a: argparse.Namespace) -> int:
    from store.acl import reader_rules, writer_rules

    print(f"ACL SETUSER {a.writer_user} on >WRITER_PASSWORD {writer_rules(a.namespace)}")
    print(f"ACL SETUSER {a.reader_user} on >READER_PASSWORD {reader_rules(a.namespace)}")
    return 0
