"""The command-line edge: the ``dynpose`` dispatcher, argument types, and the expected-error registry."""
