"""The command-line edge: argument types that range-check, and the ``dynpose`` dispatcher."""
