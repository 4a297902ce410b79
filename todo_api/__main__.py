"""`python -m todo_api <command>`: the operator commands behind the justfile recipes."""

from todo_api.ops.cli import main

main()
