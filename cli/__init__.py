"""The `relbridge` command: `main` builds the parser, each module registers its commands.

Flags come from the configs they fill (`relbridge.runtime.flags`); handlers
import the heavy layers lazily, so ``relbridge --help`` stays quick.
"""
